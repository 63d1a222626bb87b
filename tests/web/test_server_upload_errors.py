"""File uploads that must fail cleanly (each a clear JSON 4xx, the next request served), limits,
clients that vanish, auth, and the status routes."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import threading
import time
from typing import ClassVar

import aiohttp
import pytest

from support.serving import running_server
from support.uploads import (
    assert_error,
    assert_still_serving,
    form,
    get_json,
    post_json,
    request,
    silent_wav,
)

# -- errors ----------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
TRUNCATED = (
    b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF'
)
MULTIPART = "multipart/form-data; boundary=xyz"

ERRORS = {  # name: (route, request arguments, status, part of the message)
    "random-bytes": ("/transcribe", lambda a: {"data": form(os.urandom(20000))}, 415, "not a supported audio format"),
    "empty-file": ("/transcribe", lambda a: {"data": form(b"", "empty.wav", "audio/wav")}, 400, "file is empty"),
    "text-file": (
        "/transcribe",
        lambda a: {"data": form(b"hello\n" * 100, "a.txt", "text/plain")},
        415,
        "not a supported audio format",
    ),
    "png": ("/transcribe", lambda a: {"data": form(PNG, "a.png", "image/png")}, 415, "not a supported audio format"),
    "json-body": ("/transcribe", lambda a: {"json": {"file": "clip.wav"}}, 415, "unsupported content type"),
    "text-plain-body": (
        "/transcribe",
        lambda a: {"data": b"hi", "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported content type",
    ),
    "no-content-type": (
        "/transcribe",
        lambda a: {"data": b"hi", "headers": {"Content-Type": ""}},
        415,
        "not a supported audio format",
    ),  # octet-stream, by HTTP's default: sniffed, refused
    "multipart-without-file": ("/transcribe", lambda a: {"data": _fields(model="whisper-1")}, 400, "no file"),
    "audio-in-a-field-not-named-file": (
        "/transcribe",
        lambda a: {"data": form(a["wav"], "clip.wav", field="audio")},
        400,
        "field named 'file'",
    ),
    "multipart-without-boundary": (
        "/transcribe",
        lambda a: {"data": b"--xyz\r\n\r\n", "headers": {"Content-Type": "multipart/form-data"}},
        400,
        "malformed multipart",
    ),
    "multipart-junk": (
        "/transcribe",
        lambda a: {"data": b"no boundary anywhere", "headers": {"Content-Type": MULTIPART}},
        400,
        "malformed multipart",
    ),
    "multipart-truncated": (
        "/transcribe",
        lambda a: {"data": TRUNCATED, "headers": {"Content-Type": MULTIPART}},
        400,
        "malformed multipart",
    ),
    "multipart-part-header-without-colon": (
        "/transcribe",
        lambda a: {"data": b"--xyz\r\nnot a header\r\n\r\ndata\r\n--xyz--\r\n", "headers": {"Content-Type": MULTIPART}},
        400,
        "malformed multipart body: Invalid HTTP header",
    ),
    "multipart-part-header-too-long": (
        "/v1/audio/transcriptions",
        lambda a: {
            "data": b"--xyz\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\ndata\r\n--xyz--\r\n",
            "headers": {"Content-Type": MULTIPART},
        },
        400,
        "malformed multipart body: Got more than",
    ),
    "multipart-nested": (
        "/transcribe",
        lambda a: {
            "data": (
                b"--xyz\r\nContent-Type: multipart/mixed; boundary=abc\r\n"
                b'Content-Disposition: form-data; name="file"\r\n\r\n--abc\r\n\r\nhi\r\n--abc--\r\n--xyz--\r\n'
            ),
            "headers": {"Content-Type": MULTIPART},
        },
        400,
        "nested multipart",
    ),
    "header-then-junk": (
        "/transcribe",
        lambda a: {"data": form(b"fLaC" + os.urandom(5000), "x.flac")},
        400,
        "not a decodable audio file",
    ),
    "wav-header-without-audio": (
        "/transcribe",
        lambda a: {"data": form(a["wav"][:44], "x.wav")},
        400,
        "x.wav: not a decodable audio file",
    ),
    "bad-language": (
        "/transcribe",
        lambda a: {"data": form(a["wav"], "clip.wav", language="xx")},
        400,
        "unknown language",
    ),
    "bad-language-in-query": (
        "/transcribe?language=english-please",
        lambda a: {"data": form(a["wav"])},
        400,
        "unknown language",
    ),
    "openai-bad-response-format": (
        "/v1/audio/transcriptions",
        lambda a: {"data": form(a["wav"], "clip.wav", model="whisper-1", response_format="xml")},
        400,
        "response_format",
    ),
    "openai-bad-language": (
        "/v1/audio/transcriptions",
        lambda a: {"data": form(a["wav"], "clip.wav", model="whisper-1", language="zz")},
        400,
        "unknown language",
    ),
    "openai-no-file": ("/v1/audio/transcriptions", lambda a: {"data": _fields(model="whisper-1")}, 400, "no file"),
    "openai-garbage": (
        "/v1/audio/transcriptions",
        lambda a: {"data": form(os.urandom(3000), model="whisper-1")},
        415,
        "not a supported audio format",
    ),
}


def _fields(**fields: str) -> aiohttp.FormData:
    """A form of plain fields only, sent as multipart as OpenAI clients send theirs."""
    return aiohttp.FormData(fields, default_to_multipart=True)


@pytest.mark.parametrize("case", list(ERRORS))
def test_a_bad_upload_gets_a_clear_json_4xx_and_the_next_request_is_served(server, encoded, case):
    route, arguments, expected, message = ERRORS[case]
    status, body = post_json(server.url + route, **arguments({"wav": encoded["wav"].read_bytes()}))
    assert_error(status, body, expected, message)
    assert_still_serving(server.url)


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self):
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"\x00" * 100)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("content_type", ["application/vnd.apple.mpegurl", "audio/x-mpegurl", "multipart"])
def test_a_playlist_is_refused_with_415_and_never_followed(server, encoded, tmp_path, content_type):
    """HLS/concat playlists would make ffmpeg open other files or URLs: they must not even be probed."""
    fifo = tmp_path / "segment.ts"
    os.mkfifo(fifo)  # opening it for reading would block the request
    watcher = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=watcher.serve_forever, daemon=True).start()
    _Recorder.hits = []
    try:
        playlist = (
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n"
            f"#EXTINF:5.0,\nfile://{fifo}\n#EXTINF:5.0,\n{fifo}\n#EXTINF:5.0,\n{encoded['wav']}\n"
            f"#EXTINF:5.0,\nhttp://127.0.0.1:{watcher.server_address[1]}/segment.ts\n#EXT-X-ENDLIST\n"
        ).encode()
        if content_type == "multipart":
            arguments = {"data": form(playlist, "list.m3u8", "application/vnd.apple.mpegurl")}
        else:
            arguments = {"data": playlist, "headers": {"Content-Type": content_type}}
        started = time.monotonic()
        status, body = post_json(server.url + "/transcribe", **arguments)
        refusal = (
            "unsupported content type" if content_type.startswith("application/") else "not a supported audio format"
        )
        assert_error(status, body, 415, refusal)
        concat = f"ffconcat version 1.0\nfile '{encoded['wav']}'\nfile '{fifo}'\n".encode()
        status, body = post_json(server.url + "/transcribe", data=form(concat, "list.ffconcat"))
        assert_error(status, body, 415, "not a supported audio format")
        assert time.monotonic() - started < 5
    finally:
        watcher.shutdown()
        watcher.server_close()
    assert _Recorder.hits == []
    with pytest.raises(OSError):  # nobody has the FIFO open for reading
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# -- limits ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(engine):
    from roomscribe.web.config import ServerConfig

    with running_server(engine, ServerConfig(port=0, max_upload_mb=0.05, max_file_minutes=0.05)) as running:
        yield running  # uploads up to 52 kB, audio up to 3 s


@pytest.mark.parametrize("route", ["/transcribe", "/v1/audio/transcriptions"])
def test_an_upload_over_the_size_limit_gets_413(limited, encoded, route):
    data = encoded["wav"].read_bytes()  # 138 kB
    status, body = post_json(limited.url + route, data=form(data, "clip.wav", model="whisper-1"))
    assert_error(status, body, 413, "upload larger than the limit of 0.0")
    status, body = post_json(limited.url + route, data=data, headers={"Content-Type": "audio/wav"})
    assert_error(status, body, 413, "upload larger than the limit")
    assert_still_serving(limited.url)


def test_a_huge_upload_is_cut_short_with_413(limited):
    status, body = post_json(
        limited.url + "/transcribe", data=b"RIFF" + bytes(4 * 1024**2), headers={"Content-Type": "audio/wav"}
    )
    assert_error(status, body, 413, "upload larger than the limit")
    assert_still_serving(limited.url)


@pytest.mark.parametrize("route", ["/transcribe", "/v1/audio/transcriptions"])
def test_audio_over_the_duration_limit_gets_413(limited, encoded, route):
    data = encoded["mp3"].read_bytes()  # 35 kB: under the size limit, but 4.3 s
    assert len(data) < 0.05 * 1024**2
    status, body = post_json(limited.url + route, data=form(data, "clip.mp3", model="whisper-1"))
    assert_error(status, body, 413, "longer than the 3 s limit")
    assert_still_serving(limited.url)


# -- clients that go away ------------------------------------------------------------------------------


async def _send_then_drop(
    url: str, head: bytes, body: bytes, read_first_line: bool = False, wait: float = 0.0
) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(head + body)
    await writer.drain()
    first = b""
    if read_first_line:
        while b'"type":"progress"' not in first:
            first += await asyncio.wait_for(reader.read(4096), 30)
    await asyncio.sleep(wait)
    writer.transport.abort()
    return first


def test_a_client_that_disconnects_mid_upload_leaves_the_server_serving(server, encoded):
    data = encoded["wav"].read_bytes()
    head = (
        f"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {len(data) * 4}\r\n\r\n"
    ).encode()
    asyncio.run(_send_then_drop(server.url, head, data, wait=0.3))  # a quarter of the promised body
    assert_still_serving(server.url)
    assert get_json(server.url + "/status")[1]["files"]["running"] == 0


@pytest.mark.parametrize("progress", [True, False], ids=["progress", "plain"])
def test_a_client_that_disconnects_mid_transcription_leaves_the_server_serving(server, two_sentences, progress):
    data = two_sentences[0].read_bytes()
    query = "?progress=true" if progress else ""
    head = (
        f"POST /transcribe{query} HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    done_before = get_json(server.url + "/status")[1]["files"]["done"]
    first = asyncio.run(_send_then_drop(server.url, head, data, read_first_line=progress, wait=0.5))
    if progress:
        assert b"200 OK" in first and b'"done":0.0' in first
    deadline = time.monotonic() + 30
    while get_json(server.url + "/status")[1]["files"]["done"] == done_before:
        assert time.monotonic() < deadline, "the abandoned job never ended"
        time.sleep(0.1)
    assert_still_serving(server.url)


# -- auth -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured(engine):
    from roomscribe.web.config import ServerConfig

    with running_server(engine, ServerConfig(port=0, api_key="secret")) as running:
        yield running


BEARER = {"Authorization": "Bearer secret"}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"}, {"Authorization": "Basic c2VjcmV0"}],
    ids=["none", "wrong-key", "no-bearer-scheme", "basic"],
)
def test_a_keyed_server_refuses_every_data_route_without_the_key(secured, encoded, headers):
    for method, path, kwargs in [
        ("GET", "/status", {}),
        ("GET", "/v1/models", {}),
        ("POST", "/transcribe", {"data": form(encoded["wav"].read_bytes())}),
        ("POST", "/v1/audio/transcriptions", {"data": form(os.urandom(100))}),
        ("GET", "/asr", {}),
        ("GET", "/sessions/abc/transcript", {}),
        ("POST", "/whip", {"data": b"v=0", "headers": {"Content-Type": "application/sdp"}}),
    ]:
        merged = {**kwargs.pop("headers", {}), **headers}
        status, kind, body = request(method, secured.url + path, headers=merged, **kwargs)
        assert status == 401 and kind == "application/json", (path, status)
        assert "API key" in json.loads(body)["error"]["message"]

    async def websocket():
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(secured.url + "/asr?key=wrong", headers=headers)
            return refused.value.status

    assert asyncio.run(websocket()) == 401


def test_a_keyed_server_serves_the_bearer_key_and_the_websocket_query_key(secured):
    status, doc = get_json(secured.url + "/status", headers=BEARER)
    assert status == 200 and doc["asr_connections"] == 0
    status, doc = post_json(secured.url + "/transcribe?language=en", data=form(silent_wav()), headers=BEARER)
    assert status == 200 and doc["duration"] == 0.5

    from openai import OpenAI

    keyed = OpenAI(base_url=secured.url + "/v1", api_key="secret", max_retries=0, timeout=60)
    result = keyed.audio.transcriptions.create(model="whisper-1", file=("silence.wav", silent_wav()), language="en")
    assert result.text == ""

    async def websocket(url, headers=None):
        async with aiohttp.ClientSession() as http, http.ws_connect(url, headers=headers) as ws:
            messages = [await ws.receive_json()]
            await ws.send_bytes(b"")
            while messages[-1].get("type") != "ready_to_stop":
                messages.append(await ws.receive_json())
            return messages

    for url, headers in [(secured.url + "/asr?key=secret", None), (secured.url + "/asr", BEARER)]:
        messages = asyncio.run(websocket(url, headers))
        assert messages[0]["type"] == "config" and messages[-1] == {"type": "ready_to_stop"}


def test_a_keyed_server_leaves_the_page_and_health_open(secured):
    assert get_json(secured.url + "/health") == (200, {"status": "ok"})
    status, kind, body = request("GET", secured.url + "/")
    assert status == 200 and kind == "text/html" and b"<html" in body.lower()
    status, kind, _ = request("GET", secured.url + "/static/app.js")
    assert status == 200


def test_exposure_beyond_loopback_needs_a_key():
    from roomscribe.web.config import ConfigError, ServerConfig, check_exposure, is_loopback

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.53"):
        assert is_loopback(host) and check_exposure(ServerConfig(host=host)) == []
    for host in ("0.0.0.0", "::", "", "192.168.1.10", "example.org"):
        assert not is_loopback(host)
        with pytest.raises(ConfigError, match="ROOMSCRIBE_API_KEY"):
            check_exposure(ServerConfig(host=host))
    warnings = check_exposure(ServerConfig(host="0.0.0.0", api_key="k"))
    assert len(warnings) == 1 and "no TLS" in warnings[0]
    assert "no TLS" in check_exposure(ServerConfig(host="0.0.0.0"), allow_no_auth=True)[0]
    assert check_exposure(ServerConfig(host="0.0.0.0", api_key="k", certfile="c.pem", keyfile="k.pem")) == []
    with pytest.raises(ConfigError, match="go together"):
        check_exposure(ServerConfig(host="127.0.0.1", certfile="c.pem"))


@pytest.mark.parametrize(
    "argv,message",
    [
        (["serve", "--host", "0.0.0.0"], "ROOMSCRIBE_API_KEY"),
        (["serve", "--host", "192.168.1.10", "--port", "0"], "--no-auth"),
        (["serve", "--certfile", "cert.pem"], "--certfile and --keyfile go together"),
        (["serve", "--language", "xx"], "unknown language"),
    ],
)
def test_serve_refuses_an_unsafe_or_bad_configuration_with_exit_code_2(argv, message, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    monkeypatch.delenv("ROOMSCRIBE_HOST", raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("roomscribe: error:") and message in err


# -- health, status, models --------------------------------------------------------------------------------


def test_health_status_and_models_describe_the_server(server, engine, clip, encoded):
    assert get_json(server.url + "/health") == (200, {"status": "ok"})
    done_before = get_json(server.url + "/status")[1]["files"]["done"]
    assert post_json(server.url + "/transcribe", data=form(encoded["wav"].read_bytes()))[0] == 200

    status, doc = get_json(server.url + "/status")
    assert status == 200
    assert doc["models"] == [engine.model_name]
    assert doc["uptime"] >= 0
    scheduler = doc["scheduler"]
    assert scheduler["model"] == engine.model_name
    assert scheduler["streams"] == 0 and scheduler["max_lag"] == 0.0 and scheduler["level"] >= 0
    assert {"busy", "saturated", "max_batch", "stream_lags"} <= set(scheduler)
    assert isinstance(doc["sessions"], list)
    assert doc["asr_connections"] == 0
    assert doc["files"] == {"running": 0, "queued": 0, "done": done_before + 1}

    status, models = get_json(server.url + "/v1/models")
    assert status == 200 and models["object"] == "list"
    assert models["data"] == [{"id": engine.model_name, "object": "model", "owned_by": "roomscribe"}]


def test_unknown_routes_and_methods_get_json_errors(server):
    status, body = get_json(server.url + "/nope")
    assert_error(status, body, 404, "Not Found")
    status, kind, body = request("GET", server.url + "/transcribe")
    assert status == 405 and kind == "application/json"
