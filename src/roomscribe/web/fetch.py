"""Media a client names by URL or path, fetched without letting the client reach what it should not.

A server that fetches URLs for its clients can be pointed at its own network: the cloud
metadata service (169.254.169.254), an admin page on localhost, a database on 10.0.0.5.
`fetch_url` only connects to global unicast addresses, unless the operator allows a network
or host name (`--allow-fetch`):

- the host is parsed once, the way browsers and curl read it (`0x7f.1`, `2130706433` and
  `127.1` are 127.0.0.1), and an IP literal is checked as the address it means;
- a host name is resolved once, every address it resolves to is checked, and the connection
  goes to those addresses only (no second lookup a DNS server could answer differently);
- redirects are followed by hand, each target parsed, resolved and checked like the first;
- the body is sniffed from its first bytes the way uploads are, so a playlist or an HTML
  page is refused before the rest is downloaded, and it stops at `max_bytes`.

Local files (`read_local`) are served only below `--media-root`, judged by their real path
(symlinks resolved), and only regular files.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import os
import re
import socket
import stat
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from ..audio import ACCEPTED_FORMATS, sniff_format

logger = logging.getLogger("roomscribe.web")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[IPAddress]] | list[IPAddress]]
Progress = Callable[[int, int | None], None]

SNIFF_BYTES = 16  # what `sniff_format` looks at (the same head uploads are judged by)
REDIRECTS = (301, 302, 303, 307, 308)
# Media is compressed already; an encoded body would only hide its first bytes from the sniff.
REQUEST_HEADERS = {"Accept-Encoding": "identity", "Accept": "audio/*, video/*, */*;q=0.1"}
ALLOW_HINT = "an operator can allow it with --allow-fetch"


class FetchRefusedError(ValueError):
    """A URL or path the server will not fetch: a scheme, address, host, path or content the
    rules refuse. `status` is what an HTTP caller answers with (400: malformed, 403: refused,
    415: not media)."""

    def __init__(self, message: str, status: int = 403):
        super().__init__(message)
        self.status = status


class FetchFailedError(RuntimeError):
    """A fetch that was allowed but failed: no answer, an error status, too large, too slow.
    `status` is what an HTTP caller answers with (502, 504 for a timeout, 413, 404)."""

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class FetchPolicy:
    """What may be fetched: global addresses always, private ones and local files only where
    the operator says so."""

    allow: tuple[str, ...] = ()  # --allow-fetch: CIDRs ("10.0.0.0/8", "::1/128") or host names
    media_root: Path | None = None  # --media-root: local files only below it; None: no local files
    max_bytes: int = 200 * 1024**2
    timeout: float = 60.0  # the whole fetch, redirects included, in seconds
    connect_timeout: float = 10.0
    max_redirects: int = 5
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)
    _names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        allow = self.parse_allow(self.allow)
        object.__setattr__(self, "allow", allow)
        object.__setattr__(self, "_networks", tuple(_network(e) for e in allow if _is_network(e)))
        object.__setattr__(self, "_names", frozenset(e for e in allow if not _is_network(e)))
        if self.media_root is not None and not isinstance(self.media_root, Path):
            object.__setattr__(self, "media_root", Path(self.media_root))
        if self.max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {self.max_bytes}")
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("fetch timeouts must be positive")
        if self.max_redirects < 0:
            raise ValueError(f"max_redirects must be 0 or more, not {self.max_redirects}")

    @classmethod
    def parse_allow(cls, entries: str | Iterable[str]) -> tuple[str, ...]:
        """--allow-fetch entries in their canonical form: networks as CIDRs ("10.0.0.0/8"; a bare
        address is its /32 or /128), host names in lower case. Entries may also be separated by
        commas. A ValueError says which entry is wrong and why."""
        if isinstance(entries, str):
            entries = [entries]
        out: list[str] = []
        for entry in entries:
            for item in re.split(r"[,\s]+", str(entry).strip()):
                if item:
                    canonical = _canonical_allow(item)
                    if canonical not in out:
                        out.append(canonical)
        return tuple(out)

    def allows_address(self, address: IPAddress) -> bool:
        return any(address in network for network in self._networks)

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self._names


def _is_network(entry: str) -> bool:
    return "/" in entry


def _network(entry: str) -> IPNetwork:
    return ipaddress.ip_network(entry)


LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")


def _canonical_allow(item: str) -> str:
    try:
        return str(ipaddress.ip_network(item, strict=True))
    except ValueError as exc:
        if "host bits set" in str(exc):
            loose = ipaddress.ip_network(item, strict=False)
            raise ValueError(f"--allow-fetch {item}: has host bits set (did you mean {loose}?)") from None
    if "/" in item or ":" in item:
        raise ValueError(f"--allow-fetch {item}: not a valid network (write it as 10.0.0.0/8 or fd00::/8)")
    name = item.lower().rstrip(".")
    if _numeric_host(name):
        raise ValueError(f"--allow-fetch {item}: write addresses in dotted form (like 10.0.0.1 or 10.0.0.0/8)")
    if not HOST_NAME.match(name):
        raise ValueError(f"--allow-fetch {item}: not a network (10.0.0.0/8) or a host name (media.internal)")
    return name


# -- addresses ---------------------------------------------------------------------------------

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Ranges named explicitly: the ipaddress module's is_global differs between Python releases
# (3.11 before 3.11.10 calls fec0::/10, 2002::/16 and 3fff::/20 global), and the reasons make
# clearer messages. Whatever these miss, `is_global` still catches.
REFUSED_V4: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "'this network' (0.0.0.0/8; 0.0.0.0 reaches the server itself)"),
    (_V4("127.0.0.0/8"), "a loopback address"),
    (_V4("10.0.0.0/8"), "a private address (RFC 1918)"),
    (_V4("172.16.0.0/12"), "a private address (RFC 1918)"),
    (_V4("192.168.0.0/16"), "a private address (RFC 1918)"),
    (_V4("169.254.0.0/16"), "a link-local address (where cloud metadata services answer)"),
    (_V4("100.64.0.0/10"), "a carrier-grade NAT address (100.64.0.0/10)"),
    (_V4("192.0.0.0/24"), "an IETF protocol assignment (192.0.0.0/24)"),
    (_V4("192.0.2.0/24"), "a documentation address"),
    (_V4("198.51.100.0/24"), "a documentation address"),
    (_V4("203.0.113.0/24"), "a documentation address"),
    (_V4("198.18.0.0/15"), "a benchmarking address (198.18.0.0/15)"),
    (_V4("192.88.99.0/24"), "a deprecated 6to4 relay address"),
    (_V4("224.0.0.0/4"), "a multicast address"),
    (_V4("240.0.0.0/4"), "a reserved address"),
)
REFUSED_V6: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "the unspecified address (it reaches the server itself)"),
    (_V6("::1/128"), "a loopback address"),
    (_V6("fe80::/10"), "a link-local address"),
    (_V6("fec0::/10"), "a site-local address"),
    (_V6("fc00::/7"), "a unique local (private) address"),
    (_V6("ff00::/8"), "a multicast address"),
    (_V6("100::/64"), "a discard-only address"),
    (_V6("64:ff9b:1::/48"), "a local-use NAT64 address"),
    (_V6("2001::/32"), "a Teredo tunnel address"),
    (_V6("2001::/23"), "an IETF protocol assignment (2001::/23)"),
    (_V6("2001:db8::/32"), "a documentation address"),
    (_V6("3fff::/20"), "a documentation address"),
    (_V6("5f00::/16"), "a segment-routing address"),
)
GLOBAL_UNICAST_V6 = _V6("2000::/3")
NAT64 = _V6("64:ff9b::/96")
IPV4_COMPATIBLE = _V6("::/96")
THIS_NETWORK = _V4("0.0.0.0/8")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 address stands for, and how it is written in it; a packet to
    one of these reaches (or is translated to) that IPv4 address."""
    if address.ipv4_mapped is not None:
        return "an IPv4-mapped address", address.ipv4_mapped
    if address in NAT64:
        return "a NAT64 address", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return "a 6to4 address", address.sixtofour
    if address in IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return "an IPv4-compatible address", ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why the rules refuse `address` before any --allow-fetch entry is considered (None: it is
    a global unicast address)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return "an address with a zone index"
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            kind, v4 = embedded
            reason = refusal(v4)
            return f"{kind} of {v4}, {reason}" if reason else None
        if address.teredo is not None:
            server, client = address.teredo
            inner = refusal(client) or refusal(server)
            return "a Teredo tunnel address" + (f" (it embeds {inner})" if inner else "")
        for network, reason in REFUSED_V6:
            if address in network:
                return reason
        if address not in GLOBAL_UNICAST_V6 or address.is_reserved:
            return "a reserved address (outside 2000::/3)"
    else:
        for network, reason in REFUSED_V4:
            if address in network:
                return reason
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return "not a globally routable address"
    return None


def _never_allowed(address: IPAddress) -> bool:
    """Destinations no --allow-fetch entry opens, since they are not one host: the unspecified
    address (a connection to it reaches the server itself), multicast, broadcast."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is None:
            return address.is_unspecified or address.is_multicast
        address = embedded[1]
    return address in THIS_NETWORK or address.is_multicast or address == BROADCAST


def check_address(address: IPAddress, policy: FetchPolicy, host: str = "") -> None:
    """Refuse (FetchRefusedError) an address that is not global unicast, unless the address,
    the IPv4 address it embeds, or the host name it came from is allowed by the policy."""
    reason = refusal(address)
    if reason is None:
        return
    never = _never_allowed(address)
    if not never:
        embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        if policy.allows_address(address) or (embedded is not None and policy.allows_address(embedded[1])):
            return
        if host and policy.allows_host(host):
            return
    hint = "" if never else f" ({ALLOW_HINT})"
    if host and not _is_ip_literal(host):
        # The client is told the kind of address, not the address: no map of the inside network.
        logger.info("fetch of %s refused: it resolves to %s, %s", host, address, reason)
        raise FetchRefusedError(f"{host} resolves to {reason}: not fetched{hint}")
    raise FetchRefusedError(f"{address} is {reason}: not fetched{hint}")


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


# -- URLs --------------------------------------------------------------------------------------

NUMERIC_PART = r"(0x[0-9a-f]*|[0-9]+)"
NUMERIC_HOST = re.compile(rf"^{NUMERIC_PART}(\.{NUMERIC_PART}){{0,3}}$")
LAST_LABEL_NUMERIC = re.compile(rf"(^|\.){NUMERIC_PART}$")


def _numeric_host(host: str) -> bool:
    """Whether a host (trailing dot removed) is an IPv4 address to a browser: its last label
    is a number (decimal, 0x hex or 0-prefixed octal)."""
    return bool(LAST_LABEL_NUMERIC.search(host))


def _ipv4_host(host: str) -> ipaddress.IPv4Address:
    """A numeric host as the address it means, with inet_aton's reading: 1 to 4 parts, each
    decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes."""
    if not NUMERIC_HOST.match(host):
        raise FetchRefusedError(f"{host}: not a valid IPv4 address", 400)
    try:
        packed = socket.inet_aton(host)
    except OSError:
        raise FetchRefusedError(f"{host}: not a valid IPv4 address", 400) from None
    return ipaddress.IPv4Address(packed)


def _host(raw: str) -> str:
    """The URL's host in one canonical form: an IP address as ipaddress writes it (IPv6
    without brackets), a name as lower-case ASCII."""
    if raw.startswith("["):
        if not raw.endswith("]"):
            raise FetchRefusedError(f"{raw}: malformed IPv6 address", 400)
        inner = raw[1:-1]
        if "%" in inner:
            raise FetchRefusedError(f"{raw}: IPv6 zone indexes are not fetched", 400)
        try:
            return str(ipaddress.IPv6Address(inner))
        except ValueError:
            raise FetchRefusedError(f"{raw}: not a valid IPv6 address", 400) from None
    if "%" in raw:
        raise FetchRefusedError(f"{raw}: percent-encoded host names are not fetched", 400)
    try:
        # Non-ASCII names to their ASCII form first: IDNA maps full-width digits and dots to
        # ASCII, so "１２７．０．０．１" is a numeric host too.
        host = raw.encode("idna").decode("ascii").lower() if not raw.isascii() else raw.lower()
    except UnicodeError:
        raise FetchRefusedError(f"{raw}: not a valid host name", 400) from None
    host = host[:-1] if host.endswith(".") else host
    if not HOST_NAME.match(host):
        raise FetchRefusedError(f"{raw}: not a valid host name", 400)
    if _numeric_host(host):
        return str(_ipv4_host(host))
    return host


def parse_url(url: str) -> urllib.parse.SplitResult:
    """An http(s) URL in canonical form (lower-case scheme, host normalised: an IP literal in
    any of its spellings written as the address it means; no fragment), or FetchRefusedError
    saying which rule it breaks. Only syntax: whether its address may be fetched is
    `check_address`'s business."""
    if any(ord(c) < 0x21 or c == "\x7f" for c in url):
        raise FetchRefusedError("URLs with spaces or control characters are not fetched", 400)
    if "\\" in url:
        raise FetchRefusedError("URLs with backslashes are not fetched", 400)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        raise FetchRefusedError(f"malformed URL: {exc}", 400) from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise FetchRefusedError(f"only http and https URLs are fetched, not {shown}", 400)
    netloc = parts.netloc
    if "@" in netloc:
        raise FetchRefusedError("URLs with a user name or password (user:pass@host) are not fetched", 400)
    if not netloc:
        raise FetchRefusedError("the URL has no host", 400)
    if netloc.startswith("["):
        end = netloc.find("]")
        raw_host, rest = (netloc[: end + 1], netloc[end + 1 :]) if end > 0 else (netloc, "")
        if end < 0 or (rest and not rest.startswith(":")):
            raise FetchRefusedError(f"{netloc}: malformed host", 400)
        raw_port = rest[1:]
    else:
        raw_host, _, raw_port = netloc.partition(":")
        if ":" in raw_port:
            raise FetchRefusedError(f"{netloc}: IPv6 addresses go in brackets", 400)
    if not raw_host:
        raise FetchRefusedError("the URL has no host", 400)
    port = None
    if raw_port:  # "host:" is the default port, as in browsers
        if not (raw_port.isascii() and raw_port.isdigit()) or not 0 < int(raw_port) < 65536:
            raise FetchRefusedError(f"{netloc}: not a valid port", 400)
        port = int(raw_port)
    host = _host(raw_host)
    shown_host = f"[{host}]" if ":" in host else host
    canonical = f"{shown_host}:{port}" if port is not None else shown_host
    return urllib.parse.SplitResult(scheme, canonical, parts.path or "/", parts.query, "")


def _port(parts: urllib.parse.SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _request_url(parts: urllib.parse.SplitResult) -> URL:
    """The URL aiohttp requests, checked to name the very host and port that were checked, so
    that no difference between two URL parsers can send the request elsewhere."""
    url = URL(urllib.parse.urlunsplit(parts))
    if not _same_host(url.host, parts.hostname) or url.port != _port(parts) or url.user or url.password:
        raise FetchRefusedError(f"{_shown(urllib.parse.urlunsplit(parts))}: ambiguous URL", 400)
    return url


def _same_host(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    if _is_ip_literal(a) and _is_ip_literal(b):
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    return a == b


# -- resolving ---------------------------------------------------------------------------------


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal: itself), in the resolver's order."""
    if _is_ip_literal(host):
        return [ipaddress.ip_address(host)]
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailedError(f"{host}: could not resolve the host name ({exc})") from None
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])  # a zone: link-local, refused
        if address not in addresses:
            addresses.append(address)
    return addresses


async def checked_addresses(host: str, port: int, policy: FetchPolicy, resolver: Resolver) -> list[IPAddress]:
    """`host` resolved once, and every one of its addresses checked: one refused address
    refuses the host (which one a connection would use is not ours to choose). An IP literal
    is its own address, resolved by no one."""
    if _is_ip_literal(host):
        addresses = [ipaddress.ip_address(host)]
    else:
        found = resolver(host, port)
        addresses = [ipaddress.ip_address(a) for a in (await found if inspect.isawaitable(found) else found)]
    if not addresses:
        raise FetchFailedError(f"{host}: the host name has no addresses")
    for address in addresses:
        check_address(address, policy, host)
    return addresses


class PinnedResolver(AbstractResolver):
    """aiohttp's resolver for one request: the addresses already checked for the one host the
    request is for, and nothing for any other."""

    def __init__(self, host: str, addresses: list[IPAddress]):
        self.host = host
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        if host.lower().rstrip(".") != self.host:
            raise OSError(f"{host} was not checked for this fetch")
        results: list[ResolveResult] = []
        for address in self.addresses:
            kind = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            if family in (socket.AF_UNSPEC, kind):
                results.append(
                    {"hostname": host, "host": str(address), "port": port, "family": kind, "proto": 0, "flags": 0}
                )
        if not results:
            raise OSError(f"{host} has no checked address of the family asked for")
        return results

    async def close(self) -> None:
        pass


# -- content -----------------------------------------------------------------------------------


def _what_it_is(head: bytes) -> str:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"#ext"):
        return "an M3U/HLS playlist"
    if text.startswith(b"[playlist]"):
        return "a PLS playlist"
    if text.startswith(b"<asx"):
        return "an ASX playlist"
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if text.startswith(b"<"):
        return "an XML or HTML document"
    return "not an audio or video file"


def check_media(head: bytes, label: str) -> str:
    """The container `head` (a body's first bytes) starts, or FetchRefusedError: playlists,
    pages and anything else that is not one of the accepted containers are refused before
    the rest is read or anything decodes them."""
    kind = sniff_format(head)
    if kind is None:
        raise FetchRefusedError(
            f"{label}: {_what_it_is(head)}, not a supported audio format (accepted: {', '.join(ACCEPTED_FORMATS)})",
            415,
        )
    return kind


def _too_large(label: str, max_bytes: int) -> FetchFailedError:
    return FetchFailedError(f"{label}: larger than the limit of {max_bytes / 1024**2:.3g} MB", 413)


def _name_of(parts: urllib.parse.SplitResult) -> str:
    name = urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
    name = "".join(c for c in name if c.isprintable() and c not in "/\\")[:200]
    return name or parts.hostname or "download"


# -- fetching ----------------------------------------------------------------------------------


async def fetch_url(
    url: str, policy: FetchPolicy, *, resolver: Resolver = resolve, on_progress: Progress | None = None
) -> tuple[bytes, str]:
    """The media at an http(s) URL and its file name, fetched under `policy` (see the module's
    docstring). FetchRefusedError: not allowed; FetchFailedError: allowed but it failed."""
    try:
        async with asyncio.timeout(policy.timeout):
            return await _fetch(url, policy, resolver, on_progress)
    except TimeoutError:
        raise FetchFailedError(f"fetching the URL took longer than {policy.timeout:g} s", 504) from None


async def _fetch(url: str, policy: FetchPolicy, resolver: Resolver, on_progress: Progress | None):
    current = url
    for hop in range(policy.max_redirects + 1):
        try:
            parts = parse_url(current)
            host, port = parts.hostname or "", _port(parts)
            addresses = await checked_addresses(host, port, policy, resolver)
            request_url = _request_url(parts)
        except FetchRefusedError as exc:
            if hop == 0:
                raise
            raise FetchRefusedError(f"redirect to {_shown(current)} refused: {exc}", exc.status) from None
        label = _shown(urllib.parse.urlunsplit(parts))
        connector = aiohttp.TCPConnector(
            resolver=PinnedResolver(host, addresses), use_dns_cache=False, force_close=True
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=policy.connect_timeout)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, trust_env=False, auto_decompress=False
        ) as session:
            try:
                async with session.get(request_url, allow_redirects=False, headers=REQUEST_HEADERS) as response:
                    if response.status in REDIRECTS:
                        location = response.headers.get("Location")
                        if not location:
                            raise FetchFailedError(f"{label}: HTTP {response.status} without a Location")
                        current = urllib.parse.urljoin(urllib.parse.urlunsplit(parts), location)
                        continue
                    if not 200 <= response.status < 300:
                        raise FetchFailedError(f"{label}: HTTP {response.status} {response.reason or ''}".rstrip())
                    data = await _read_body(response, policy.max_bytes, label, on_progress)
                    return data, _name_of(parts)
            except aiohttp.ServerTimeoutError:
                raise FetchFailedError(f"{label}: no connection within {policy.connect_timeout:g} s", 504) from None
            except aiohttp.ClientConnectorError as exc:
                reason = exc.os_error.strerror or type(exc.os_error).__name__
                raise FetchFailedError(f"{label}: could not connect ({reason})") from None
            except aiohttp.ClientResponseError as exc:
                raise FetchFailedError(f"{label}: bad response ({exc.message})") from None
            except aiohttp.ClientError as exc:
                raise FetchFailedError(f"{label}: {type(exc).__name__} {exc}".rstrip()) from None
    raise FetchFailedError(f"{_shown(url)}: more than {policy.max_redirects} redirects")


def _shown(url: str) -> str:
    """A URL in messages: without its query (which may carry a token), and not too long."""
    shown = url.split("?", 1)[0].split("#", 1)[0]
    return shown if len(shown) <= 200 else shown[:200] + "..."


async def _read_body(
    response: aiohttp.ClientResponse, max_bytes: int, label: str, on_progress: Progress | None
) -> bytes:
    total = response.content_length
    if total is not None and total > max_bytes:
        raise _too_large(label, max_bytes)  # before a byte of the body is read
    chunks: list[bytes] = []
    size, sniffed = 0, False
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(label, max_bytes)
        chunks.append(chunk)
        if not sniffed and size >= SNIFF_BYTES:
            check_media(b"".join(chunks)[:SNIFF_BYTES], label)
            sniffed = True
        if on_progress is not None:
            on_progress(size, total)
    if size == 0:
        raise FetchFailedError(f"{label}: the response is empty")
    data = b"".join(chunks)
    if not sniffed:
        check_media(data, label)
    return data


# -- local files -------------------------------------------------------------------------------


def read_local(path: str, policy: FetchPolicy) -> tuple[bytes, str]:
    """A file below the policy's media root (a plain path, relative to the root or absolute,
    or a file:// URL) and its name. Blocking: call it in a thread."""
    if policy.media_root is None:
        raise FetchRefusedError("local files are not served: the server has no --media-root")
    if "\x00" in path:
        raise FetchRefusedError("the path has a NUL byte", 400)
    if path.lower().startswith("file:"):
        parts = urllib.parse.urlsplit(path)
        if parts.netloc not in ("", "localhost"):
            raise FetchRefusedError(f"file URLs name no host, not {parts.netloc}", 400)
        if parts.query or parts.fragment:
            raise FetchRefusedError("file URLs with a query or fragment are not served", 400)
        path = urllib.parse.unquote(parts.path)
        if "\x00" in path:
            raise FetchRefusedError("the path has a NUL byte", 400)
    if not path:
        raise FetchRefusedError("no path given", 400)
    try:
        root = policy.media_root.resolve(strict=True)
    except OSError:
        raise FetchFailedError(f"the media root {policy.media_root} does not exist", 500) from None
    # The path as written is judged first, without touching the disk, so that a client cannot
    # learn which files exist outside the root.
    written = Path(os.path.normpath(root / path))
    if not written.is_relative_to(root):
        raise FetchRefusedError(f"{path}: outside the media root")
    try:
        real = written.resolve(strict=True)
    except FileNotFoundError:
        raise FetchFailedError(f"{path}: no such file", 404) from None
    except (OSError, RuntimeError) as exc:  # a symlink loop, a permission
        raise FetchFailedError(f"{path}: cannot be read ({type(exc).__name__})", 404) from None
    if not real.is_relative_to(root):
        raise FetchRefusedError(f"{path}: a link to outside the media root")
    # Not blocking on a FIFO's open, not following a link swapped in since `resolve`; what
    # was opened is checked again on its descriptor.
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise FetchFailedError(f"{path}: cannot be opened ({exc.strerror})", 404) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchRefusedError(f"{path}: not a regular file")
        if info.st_size > policy.max_bytes:
            raise _too_large(path, policy.max_bytes)
        if info.st_size == 0:
            raise FetchFailedError(f"{path}: file is empty", 400)
        with os.fdopen(fd, "rb", closefd=False) as file:
            head = file.read(SNIFF_BYTES)
            check_media(head, path)
            data = head + file.read(policy.max_bytes + 1 - len(head))
    finally:
        os.close(fd)
    if len(data) > policy.max_bytes:  # grew since fstat
        raise _too_large(path, policy.max_bytes)
    return data, real.name


SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)


async def fetch_media(
    source: str, policy: FetchPolicy, *, resolver: Resolver = resolve, on_progress: Progress | None = None
) -> tuple[bytes, str]:
    """Media a client names: an http(s) URL (`fetch_url`), or a file:// URL or path below the
    media root (`read_local`); any other scheme is refused."""
    source = source.strip()
    if not source:
        raise FetchRefusedError("no URL or path given", 400)
    scheme = SCHEME.match(source)
    kind = scheme.group(1).lower() if scheme else None
    if kind in ("http", "https"):
        return await fetch_url(source, policy, resolver=resolver, on_progress=on_progress)
    if kind is not None and kind != "file":
        raise FetchRefusedError(
            f"only http, https and file URLs are fetched, not {kind}: (a local path with a colon starts with ./)",
            400,
        )
    data, name = await asyncio.to_thread(read_local, source, policy)
    if on_progress is not None:
        on_progress(len(data), len(data))
    return data, name
