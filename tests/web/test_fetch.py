"""Fetching media a client names by URL or path: addresses refused before any connection,
URL spellings read as the addresses they mean, redirects checked hop by hop, bodies sniffed
and limited, local files kept below the media root.

Nothing here sends a packet beyond loopback: refused addresses are given to the checks (or by
an injected resolver), never connected to, and `loopback_only` fails any test whose code
tries to connect or resolve a name anywhere else."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from roomscribe.web.fetch import (
    FetchFailedError,
    FetchPolicy,
    FetchRefusedError,
    check_address,
    fetch_media,
    fetch_url,
    parse_url,
    read_local,
    resolve,
)
from support.fetch_server import NOT_MEDIA, MediaServer, flac_bytes, media_server, wav_bytes

LOOPBACK_ONLY = FetchPolicy(allow=("127.0.0.1/32",))

# -- the guard ---------------------------------------------------------------------------------


def _is_loopback(host) -> bool:
    try:
        address = ipaddress.ip_address(str(host).split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


@dataclass
class Network:
    """What the code under test tried: every connection (loopback ones go ahead), and any
    connection or name lookup that was stopped for leaving the machine."""

    connects: list = field(default_factory=list)
    stopped: list = field(default_factory=list)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch) -> Network:
    network = Network()
    real_connect, real_connect_ex, real_getaddrinfo = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.getaddrinfo,
    )

    def allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        network.connects.append(address)
        if _is_loopback(address[0]):
            return True
        network.stopped.append(address)
        return False

    def connect(sock, address):
        if not allowed(sock, address):
            raise ConnectionRefusedError(f"test guard: {address} is not loopback")
        return real_connect(sock, address)

    def connect_ex(sock, address):
        if not allowed(sock, address):
            raise ConnectionRefusedError(f"test guard: {address} is not loopback")
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
            network.stopped.append(host)
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no name lookups ({host})")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield network
    assert not network.stopped, f"the code tried to reach beyond loopback: {network.stopped}"


@dataclass
class FakeDNS:
    """An injected resolver: fixed answers, a record of what was asked; unknown names fail
    the test instead of reaching a DNS server."""

    answers: dict[str, list[str]]
    asked: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int):
        self.asked.append(host)
        assert host in self.answers, f"unexpected lookup of {host}"
        return [ipaddress.ip_address(a) for a in self.answers[host]]


def no_lookups(host: str, port: int):
    raise AssertionError(f"{host} was looked up, but an IP literal needs no lookup")


@pytest.fixture(scope="module")
def server() -> MediaServer:
    with media_server() as running:
        yield running


def fetch(url: str, policy: FetchPolicy = LOOPBACK_ONLY, **kw):
    return asyncio.run(fetch_url(url, policy, **kw))


def refused(url: str, policy: FetchPolicy = LOOPBACK_ONLY, **kw) -> FetchRefusedError:
    with pytest.raises(FetchRefusedError) as caught:
        fetch(url, policy, **kw)
    return caught.value


def failed(url: str, policy: FetchPolicy = LOOPBACK_ONLY, **kw) -> FetchFailedError:
    with pytest.raises(FetchFailedError) as caught:
        fetch(url, policy, **kw)
    return caught.value


def test_the_guard_sees_what_the_code_does(server, loopback_only):
    fetch(server.url("/clip.wav"))
    assert ("127.0.0.1", server.port) in loopback_only.connects
    with pytest.raises(FetchFailedError):
        asyncio.run(resolve("guard-check.invalid", 80))
    assert loopback_only.stopped == ["guard-check.invalid"]
    loopback_only.stopped.clear()


# -- addresses ---------------------------------------------------------------------------------

REFUSED = {  # address: part of the reason
    "127.0.0.1": "loopback",
    "127.255.255.254": "loopback",
    "10.0.0.1": "private",
    "172.16.0.1": "private",
    "172.31.255.255": "private",
    "192.168.1.1": "private",
    "169.254.169.254": "link-local",
    "169.254.0.1": "link-local",
    "100.64.0.1": "carrier-grade NAT",
    "100.127.255.254": "carrier-grade NAT",
    "198.18.0.1": "benchmarking",
    "198.19.255.254": "benchmarking",
    "192.0.2.1": "documentation",
    "198.51.100.7": "documentation",
    "203.0.113.9": "documentation",
    "192.0.0.8": "IETF protocol assignment",
    "0.0.0.0": "this network",
    "0.1.2.3": "this network",
    "224.0.0.1": "multicast",
    "239.255.255.250": "multicast",
    "240.0.0.1": "reserved",
    "255.255.255.255": "reserved",
    "::1": "loopback",
    "::": "unspecified",
    "fe80::1": "link-local",
    "febf:ffff::1": "link-local",
    "fec0::1": "site-local",
    "fc00::1": "unique local",
    "fd12:3456:789a::1": "unique local",
    "ff02::1": "multicast",
    "ff05::1:3": "multicast",
    "2001:db8::1": "documentation",
    "3fff::1": "documentation",
    "100::1": "discard-only",
    "64:ff9b:1::a00:1": "local-use NAT64",
    "5f00::1": "segment-routing",
    "2001:2::1": "IETF protocol assignment",
    "::ffff:0:7f00:1": "reserved",  # IPv4-translated (SIIT): outside 2000::/3
    "4000::1": "reserved",
    # An IPv6 spelling of a refused IPv4 address is judged by that address.
    "::ffff:127.0.0.1": "IPv4-mapped address of 127.0.0.1, a loopback",
    "::ffff:169.254.169.254": "IPv4-mapped address of 169.254.169.254, a link-local",
    "::ffff:10.0.0.1": "private",
    "::ffff:0.0.0.0": "this network",
    "::127.0.0.1": "IPv4-compatible address of 127.0.0.1, a loopback",
    "::10.1.2.3": "private",
    "64:ff9b::7f00:1": "NAT64 address of 127.0.0.1, a loopback",
    "64:ff9b::a9fe:a9fe": "NAT64 address of 169.254.169.254",
    "2002:7f00:1::1": "6to4 address of 127.0.0.1, a loopback",
    "2002:a9fe:a9fe::": "6to4 address of 169.254.169.254",
    "2002:c0a8:101::1": "private",
    "2001:0:4136:e378:8000:63bf:80ff:fffe": "Teredo",  # client 127.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo",
}
GLOBAL = [
    "93.184.216.34",
    "8.8.8.8",
    "1.1.1.1",
    "100.128.0.1",  # just past the CGNAT range
    "172.32.0.1",  # just past 172.16.0.0/12
    "2606:4700::1",
    "2a00:1450:4001:81c::200e",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",  # NAT64 of 93.184.216.34
    "2002:5db8:d822::1",  # 6to4 of 93.184.216.34
]


@pytest.mark.parametrize("address", REFUSED)
def test_refused_addresses(address):
    with pytest.raises(FetchRefusedError) as caught:
        check_address(ipaddress.ip_address(address), FetchPolicy())
    assert REFUSED[address] in str(caught.value)
    assert caught.value.status == 403
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("address", GLOBAL)
def test_global_addresses_pass(address):
    check_address(ipaddress.ip_address(address), FetchPolicy())  # only checked, never connected to


def test_teredo_names_the_address_it_embeds():
    with pytest.raises(FetchRefusedError, match="embeds a loopback"):
        check_address(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:80ff:fffe"), FetchPolicy())


@pytest.mark.parametrize(
    ("address", "allow"),
    [
        ("10.0.0.1", "10.0.0.0/8"),
        ("10.20.30.40", "10.20.30.40"),
        ("127.0.0.1", "127.0.0.1/32"),
        ("169.254.169.254", "169.254.169.254/32"),
        ("::ffff:10.0.0.1", "10.0.0.0/8"),  # judged by the IPv4 address it is
        ("64:ff9b::a00:1", "10.0.0.0/8"),
        ("fd00::5", "fd00::/8"),
        ("::1", "::1/128"),
        ("192.168.7.7", "192.168.0.0/16, 10.0.0.0/8"),
    ],
)
def test_allowed_networks_let_refused_addresses_through(address, allow):
    policy = FetchPolicy(allow=(allow,))
    check_address(ipaddress.ip_address(address), policy)
    with pytest.raises(FetchRefusedError, match="--allow-fetch"):
        check_address(ipaddress.ip_address(address), FetchPolicy(allow=("192.0.2.0/24",)))


def test_allowed_host_names_let_their_addresses_through():
    policy = FetchPolicy(allow=("Media.Internal",))
    check_address(ipaddress.ip_address("10.1.2.3"), policy, "media.internal")
    check_address(ipaddress.ip_address("fd00::1"), policy, "MEDIA.internal.")
    with pytest.raises(FetchRefusedError, match="other.internal resolves to a private address"):
        check_address(ipaddress.ip_address("10.1.2.3"), policy, "other.internal")
    with pytest.raises(FetchRefusedError):  # a subdomain is another host
        check_address(ipaddress.ip_address("10.1.2.3"), policy, "evil.media.internal")


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0", "224.0.0.1", "ff02::1", "255.255.255.255"]
)
def test_no_entry_opens_what_is_not_one_host(address):
    policy = FetchPolicy(allow=("0.0.0.0/0", "::/0", "media.internal"))
    with pytest.raises(FetchRefusedError) as caught:
        check_address(ipaddress.ip_address(address), policy, "media.internal")
    assert "--allow-fetch" not in str(caught.value)


def test_a_host_name_message_does_not_give_the_address_away():
    with pytest.raises(FetchRefusedError) as caught:
        check_address(ipaddress.ip_address("10.9.8.7"), FetchPolicy(), "intranet.example")
    assert "intranet.example resolves to a private address" in str(caught.value)
    assert "10.9.8.7" not in str(caught.value)


def test_parse_allow():
    assert FetchPolicy.parse_allow(["10.0.0.0/8", "127.0.0.1", "::1", "Media.Internal.", "a.example,b.example"]) == (
        "10.0.0.0/8",
        "127.0.0.1/32",
        "::1/128",
        "media.internal",
        "a.example",
        "b.example",
    )
    assert FetchPolicy.parse_allow("fd00::/8") == ("fd00::/8",)
    assert FetchPolicy(allow=["10.0.0.0/8", "10.0.0.0/8"]).allow == ("10.0.0.0/8",)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "not a valid network"),
        ("fd00::/300", "not a valid network"),
        ("0x7f.1", "dotted form"),
        ("2130706433", "dotted form"),
        ("bad_host!", "not a network"),
        ("-leading.example", "not a network"),
    ],
)
def test_parse_allow_says_which_entry_is_wrong(entry, message):
    with pytest.raises(ValueError, match=message) as caught:
        FetchPolicy.parse_allow([entry])
    assert entry in str(caught.value)
    with pytest.raises(ValueError):
        FetchPolicy(allow=(entry,))


# -- URLs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "ftp://example.com/a.mp3",
        "gopher://127.0.0.1:6379/_INFO",
        "dict://127.0.0.1:11211/stat",
        "data:audio/wav;base64,UklGRg==",
        "javascript:alert(1)",
        "ws://example.com/stream",
        "jar:http://example.com/a.jar!/a.wav",
        "//example.com/a.wav",
        "example.com/a.wav",
    ],
)
def test_only_http_and_https(url):
    with pytest.raises(FetchRefusedError, match="only http and https") as caught:
        parse_url(url)
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@example.com/a.wav",
        "http://user@example.com/a.wav",
        "http://example.com@127.0.0.1/a.wav",
        "http://:@example.com/",
    ],
)
def test_no_userinfo(url):
    with pytest.raises(FetchRefusedError, match="user name or password"):
        parse_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://0x7f.0.0.1/",
        "http://0x7F000001/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://127.0.0.1./",
        "http://0x7f.1.:8080/",
        "HTTP://127.000.000.001/",
        "http://１２７．０．０．１/",  # full-width, which IDNA maps to ASCII
    ],
)
def test_loopback_spellings_are_read_as_loopback(url):
    assert parse_url(url).hostname == "127.0.0.1"
    # ... and fetched as what they are: refused, without a lookup or a connection.
    error = refused(url, FetchPolicy(), resolver=no_lookups)
    assert "127.0.0.1 is a loopback address" in str(error)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://[::ffff:127.0.0.1]/", "::ffff:7f00:1"),
        ("http://[0:0:0:0:0:0:0:1]/", "::1"),
        ("http://0/", "0.0.0.0"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
        ("http://2852039166/", "169.254.169.254"),
        ("http://10.1/", "10.0.0.1"),
    ],
)
def test_other_ip_spellings(url, host):
    assert parse_url(url).hostname == host
    refused(url, FetchPolicy(), resolver=no_lookups)


@pytest.mark.parametrize(
    "url",
    [
        "http:///a.wav",
        "http://",
        "http://:80/",
        "http://256.0.0.1/",
        "http://1.2.3.4.5/",
        "http://08.0.0.1/",
        "http://0x100000000/",
        "http://example.123/",
        "http://exa mple.com/",
        "http://example.com/a b",
        "http://example.com\\@127.0.0.1/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://127.0.0.1:0/",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:８０/",
        "http://a:b:c/",
        "http://a..b/",
        "http://example.com\n.evil/",
    ],
)
def test_malformed_urls(url):
    with pytest.raises(FetchRefusedError) as caught:
        parse_url(url)
    assert caught.value.status == 400


def test_parse_url_gives_a_canonical_form():
    parts = parse_url("HTTPS://Media.Example.COM.:8443/a/b.wav?token=1#frag")
    assert (parts.scheme, parts.netloc, parts.hostname, parts.port) == (
        "https",
        "media.example.com:8443",
        "media.example.com",
        8443,
    )
    assert (parts.path, parts.query, parts.fragment) == ("/a/b.wav", "token=1", "")
    assert parse_url("http://[::1]:8080").netloc == "[::1]:8080"
    assert parse_url("http://bücher.example/").hostname == "xn--bcher-kva.example"


# -- resolving ---------------------------------------------------------------------------------


def test_resolve_an_ip_literal_without_a_lookup():
    assert asyncio.run(resolve("127.0.0.1", 80)) == [ipaddress.ip_address("127.0.0.1")]
    assert asyncio.run(resolve("::1", 80)) == [ipaddress.ip_address("::1")]


def test_resolve_returns_every_address(monkeypatch):
    def fake_getaddrinfo(host, port, *args, **kwargs):
        assert host == "media.example"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("fe80::1%eth0", port, 0, 2)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    found = asyncio.run(resolve("media.example", 443))
    assert found == [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("fe80::1")]


def test_a_name_that_does_not_resolve_fails(monkeypatch):
    def nothing(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", nothing)
    with pytest.raises(FetchFailedError, match="could not resolve"):
        asyncio.run(resolve("nowhere.example", 80))


def test_a_name_resolving_to_loopback_is_refused_before_connecting(loopback_only):
    # Nothing listens on port 9: a refusal that came from connecting would be a FetchFailedError.
    dns = FakeDNS({"evil.example": ["127.0.0.1"]})
    error = refused("http://evil.example:9/a.wav", FetchPolicy(), resolver=dns)
    assert "evil.example resolves to a loopback address" in str(error)
    assert dns.asked == ["evil.example"]
    assert loopback_only.connects == []


@pytest.mark.parametrize(
    "addresses",
    [
        ["93.184.216.34", "10.0.0.1"],
        ["2606:4700::1", "169.254.169.254"],
        ["93.184.216.34", "::ffff:127.0.0.1"],
        ["fd00::1", "93.184.216.34"],
    ],
)
def test_every_address_of_a_name_is_checked(loopback_only, addresses):
    dns = FakeDNS({"mixed.example": addresses})
    refused("http://mixed.example/a.wav", FetchPolicy(), resolver=dns)
    assert dns.asked == ["mixed.example"]
    assert loopback_only.connects == []  # the global one was not tried either


def test_a_name_with_no_addresses_fails():
    with pytest.raises(FetchFailedError, match="no addresses"):
        fetch("http://empty.example/", resolver=FakeDNS({"empty.example": []}))


# -- fetching from a real server -----------------------------------------------------------------


def test_fetches_a_wav(server):
    progress = []
    data, name = fetch(server.url("/clip.wav"), on_progress=lambda done, total: progress.append((done, total)))
    assert data == wav_bytes()
    assert name == "clip.wav"
    assert progress[-1] == (len(data), len(data))


def test_fetches_a_flac_that_decodes(server):
    from roomscribe.audio import load_audio

    data, name = fetch(server.url("/clip.flac"))
    assert data == flac_bytes() and name == "clip.flac"
    assert len(load_audio(data, untrusted=True)) == 4000


def test_the_default_policy_refuses_the_test_server(server, loopback_only):
    error = refused(server.url("/clip.wav"), FetchPolicy())
    assert "127.0.0.1 is a loopback address" in str(error)
    assert "--allow-fetch" in str(error)
    assert loopback_only.connects == []


def test_the_connection_goes_to_the_checked_address_with_the_host_name(server):
    """A resolver answering differently the second time (DNS rebinding) is asked once: the
    connection goes to what was checked, and the request still names the host."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["169.254.169.254"]])
    asked = []

    async def rebinding(host, port):
        asked.append(host)
        return [ipaddress.ip_address(a) for a in next(answers)]

    before = len(server.hosts)
    data, _ = fetch(server.url("/clip.wav", host="media.test"), resolver=rebinding)
    assert data == wav_bytes()
    assert asked == ["media.test"]
    assert server.hosts[before:] == [f"media.test:{server.port}"]


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://0xa9fea9fe/",
        "http://[fd00::1]/",
        "http://0.0.0.0:{port}/clip.wav",
    ],
)
def test_redirects_to_refused_addresses(server, loopback_only, target):
    target = target.format(port=server.port)
    error = refused(server.url(f"/redirect?to={target}"), resolver=no_lookups)
    assert str(error).startswith("redirect to ")
    assert all(_is_loopback(a[0]) for a in loopback_only.connects)  # only the test server's


def test_a_redirect_to_another_scheme_is_refused(server):
    for target in ("file:///etc/passwd", "gopher://127.0.0.1:6379/_", "ftp://127.0.0.1/a.wav"):
        error = refused(server.url(f"/redirect?to={target}"))
        assert "only http and https" in str(error)


def test_a_redirect_to_a_name_is_resolved_and_checked(server):
    # localhost is 127.0.0.1 and ::1: with only 127.0.0.1/32 allowed, ::1 refuses the name
    # (which address a connection would use is not ours to choose).
    dns = FakeDNS({"localhost": ["127.0.0.1", "::1"]})
    target = server.url("/clip.wav", host="localhost")
    error = refused(server.url(f"/redirect?to={target}"), resolver=dns)
    assert "localhost resolves to a loopback address" in str(error)
    assert dns.asked == ["localhost"]
    # Allowing both addresses, or the name itself, lets it through.
    for allow in (("127.0.0.1/32", "::1/128"), ("127.0.0.1/32", "localhost")):
        data, _ = fetch(server.url(f"/redirect?to={target}"), FetchPolicy(allow=allow), resolver=dns)
        assert data == wav_bytes()
    # A name resolving to the allowed address only is fine with 127.0.0.1/32.
    data, _ = fetch(server.url(f"/redirect?to={target}"), resolver=FakeDNS({"localhost": ["127.0.0.1"]}))
    assert data == wav_bytes()


def test_redirects_up_to_the_limit(server):
    policy = FetchPolicy(allow=("127.0.0.1/32",), max_redirects=2)
    data, name = fetch(server.url("/hops/2"), policy)
    assert data == wav_bytes() and name == "0"
    error = failed(server.url("/hops/3"), policy)
    assert "more than 2 redirects" in str(error)
    no_redirects = FetchPolicy(allow=("127.0.0.1/32",), max_redirects=0)
    assert "more than 0 redirects" in str(failed(server.url("/hops/1"), no_redirects))


def test_too_large_with_a_content_length(server):
    progress = []
    policy = FetchPolicy(allow=("127.0.0.1/32",), max_bytes=64 * 1024)
    error = failed(server.url("/big"), policy, on_progress=lambda *a: progress.append(a))
    assert "larger than the limit of 0.0625 MB" in str(error)
    assert error.status == 413
    assert progress == []  # refused on the header, before the body


def test_too_large_without_a_content_length(server):
    progress = []
    policy = FetchPolicy(allow=("127.0.0.1/32",), max_bytes=256 * 1024)
    error = failed(server.url("/big-chunked"), policy, on_progress=lambda *a: progress.append(a))
    assert "larger than the limit of 0.25 MB" in str(error)
    assert progress and progress[-1][0] <= 256 * 1024 and progress[-1][1] is None


@pytest.mark.parametrize("kind", NOT_MEDIA)
def test_what_is_not_media_is_refused(server, kind):
    error = refused(server.url(f"/not-media/{kind}"))
    assert "not a supported audio format" in str(error)
    assert error.status == 415


def test_a_playlist_is_refused_before_the_rest_arrives(server):
    policy = FetchPolicy(allow=("127.0.0.1/32",), timeout=10)
    started = time.monotonic()
    error = refused(server.url("/playlist-then-hang"), policy)
    assert "M3U/HLS playlist" in str(error)
    assert time.monotonic() - started < 3  # judged on its first lines, not after the timeout


def test_an_encoded_body_is_not_unpacked(server):
    # The server ignores Accept-Encoding: identity; what it sends is not audio as it stands.
    assert "not a supported audio format" in str(refused(server.url("/gzipped")))


def test_an_error_status(server):
    error = failed(server.url("/missing.wav"))
    assert "HTTP 404" in str(error)
    assert isinstance(error, RuntimeError)


def test_a_slow_server_times_out(server):
    policy = FetchPolicy(allow=("127.0.0.1/32",), timeout=0.3)
    started = time.monotonic()
    error = failed(server.url("/slow"), policy)
    assert "longer than 0.3 s" in str(error)
    assert error.status == 504
    assert time.monotonic() - started < 2


def test_nothing_listening():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert "could not connect" in str(failed(f"http://127.0.0.1:{port}/a.wav"))


# -- local files -------------------------------------------------------------------------------


@pytest.fixture
def media(tmp_path):
    """A media root with audio in it, and a file outside it."""
    root = tmp_path / "media"
    (root / "talks").mkdir(parents=True)
    (root / "clip.wav").write_bytes(wav_bytes())
    (root / "talks" / "my talk.flac").write_bytes(flac_bytes())
    (root / "notes.txt").write_text("not audio, and long enough to be sniffed\n")
    (root / "list.m3u").write_bytes(NOT_MEDIA["m3u"])
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.wav").write_bytes(wav_bytes())
    return root


def in_thread(fn, *args, seconds: float = 5):
    """`fn(*args)` with a deadline, so that a read that blocks fails the test instead of hanging it."""
    result: dict = {}

    def run():
        try:
            result["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised on the test's thread
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{fn.__name__}{args} blocked"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_no_media_root_no_local_files(media):
    for source in ("clip.wav", str(media / "clip.wav"), f"file://{media}/clip.wav"):
        with pytest.raises(FetchRefusedError, match="the server has no --media-root"):
            read_local(source, FetchPolicy())


def test_reads_files_below_the_root(media):
    policy = FetchPolicy(media_root=media)
    assert read_local("clip.wav", policy) == (wav_bytes(), "clip.wav")
    assert read_local(str(media / "clip.wav"), policy) == (wav_bytes(), "clip.wav")
    assert read_local(f"file://{media}/clip.wav", policy) == (wav_bytes(), "clip.wav")
    assert read_local(f"file://localhost{media}/clip.wav", policy) == (wav_bytes(), "clip.wav")
    assert read_local(f"file://{media}/talks/my%20talk.flac", policy) == (flac_bytes(), "my talk.flac")
    assert read_local("talks/../clip.wav", policy)[1] == "clip.wav"
    assert read_local("clip.wav", FetchPolicy(media_root=str(media)))[1] == "clip.wav"


def test_a_root_that_is_a_link(media, tmp_path):
    link = tmp_path / "media-link"
    link.symlink_to(media)
    assert read_local("clip.wav", FetchPolicy(media_root=link))[1] == "clip.wav"
    assert read_local(str(media / "clip.wav"), FetchPolicy(media_root=link))[1] == "clip.wav"


@pytest.mark.parametrize(
    "source",
    [
        "../outside/secret.wav",
        "talks/../../outside/secret.wav",
        "{outside}/secret.wav",
        "file://{outside}/secret.wav",
        "file://{media}/../outside/secret.wav",
        "/etc/passwd",
        "file:///etc/passwd",
        "/dev/zero",
    ],
)
def test_paths_outside_the_root(media, source):
    source = source.format(media=media, outside=media.parent / "outside")
    with pytest.raises(FetchRefusedError, match="outside the media root"):
        read_local(source, FetchPolicy(media_root=media))


def test_links_are_judged_by_where_they_lead(media):
    policy = FetchPolicy(media_root=media)
    (media / "escape.wav").symlink_to(media.parent / "outside" / "secret.wav")
    (media / "escape-dir").symlink_to(media.parent / "outside")
    (media / "device").symlink_to("/dev/zero")
    for source in ("escape.wav", "escape-dir/secret.wav", "device"):
        with pytest.raises(FetchRefusedError, match="a link to outside the media root"):
            read_local(source, policy)
    (media / "inside.wav").symlink_to(media / "clip.wav")
    assert read_local("inside.wav", policy) == (wav_bytes(), "clip.wav")


def test_only_regular_files(media):
    policy = FetchPolicy(media_root=media)
    os.mkfifo(media / "pipe.wav")
    with pytest.raises(FetchRefusedError, match="not a regular file"):
        in_thread(read_local, "pipe.wav", policy)  # refused without waiting for a writer
    for directory in ("talks", ".", str(media)):
        with pytest.raises(FetchRefusedError, match="not a regular file"):
            read_local(directory, policy)


def test_local_files_that_fail(media):
    policy = FetchPolicy(media_root=media)
    with pytest.raises(FetchFailedError, match="no such file") as caught:
        read_local("missing.wav", policy)
    assert caught.value.status == 404
    with pytest.raises(FetchFailedError, match="larger than"):
        read_local("clip.wav", FetchPolicy(media_root=media, max_bytes=1000))
    (media / "empty.wav").write_bytes(b"")
    with pytest.raises(FetchFailedError, match="empty"):
        read_local("empty.wav", policy)
    with pytest.raises(FetchFailedError, match="media root"):
        read_local("clip.wav", FetchPolicy(media_root=media / "gone"))


def test_local_files_are_sniffed_too(media):
    policy = FetchPolicy(media_root=media)
    with pytest.raises(FetchRefusedError, match="not a supported audio format"):
        read_local("notes.txt", policy)
    with pytest.raises(FetchRefusedError, match="playlist"):
        read_local("list.m3u", policy)


@pytest.mark.parametrize("source", ["file://otherhost/clip.wav", "file:///clip.wav?x=1", "clip.wav\x00.txt", ""])
def test_malformed_local_sources(media, source):
    with pytest.raises(FetchRefusedError):
        read_local(source, FetchPolicy(media_root=media))


# -- one door for both -------------------------------------------------------------------------


def test_fetch_media_dispatches(server, media):
    policy = FetchPolicy(allow=("127.0.0.1/32",), media_root=media)
    assert asyncio.run(fetch_media(server.url("/clip.wav"), policy)) == (wav_bytes(), "clip.wav")
    assert asyncio.run(fetch_media("clip.wav", policy)) == (wav_bytes(), "clip.wav")
    assert asyncio.run(fetch_media(f"file://{media}/clip.wav", policy)) == (wav_bytes(), "clip.wav")
    progress = []
    asyncio.run(fetch_media(" talks/my talk.flac ", policy, on_progress=lambda *a: progress.append(a)))
    assert progress == [(len(flac_bytes()), len(flac_bytes()))]


@pytest.mark.parametrize(
    "source",
    [
        "ftp://127.0.0.1/a.wav",
        "gopher://127.0.0.1:6379/_INFO",
        "data:audio/wav;base64,UklGRg==",
        "javascript:alert(1)",
        "smb://fileserver/share/a.wav",
        "talks:clip.wav",
        "",
        "   ",
    ],
)
def test_fetch_media_refuses_other_schemes(media, source, loopback_only):
    with pytest.raises(FetchRefusedError):
        asyncio.run(fetch_media(source, FetchPolicy(allow=("127.0.0.1/32",), media_root=media)))
    assert loopback_only.connects == []


def test_fetch_media_refuses_what_the_policy_refuses(loopback_only):
    for source in ("http://169.254.169.254/latest/meta-data/", "http://[::1]/", "clip.wav"):
        with pytest.raises(FetchRefusedError):
            asyncio.run(fetch_media(source, FetchPolicy(), resolver=no_lookups))
    assert loopback_only.connects == []
