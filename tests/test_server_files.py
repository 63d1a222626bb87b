"""File transcription on `roomscribe serve`: `POST /transcribe`, the OpenAI-compatible
`POST /v1/audio/transcriptions` (through the `openai` client library), progress lines, the
`roomscribe transcribe --server` client, errors and limits, auth, and the status routes.

WER: whisper_normalizer's EnglishTextNormalizer on both sides, then jiwer.
"""

from __future__ import annotations

import asyncio
import http.server
import io
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar

import aiohttp
import numpy as np
import pytest
import soundfile as sf
from serving import running_server

CLIP = "asr/en/ljspeech/LJ001-0107.flac"  # 4.3 s: "To say a few words on the principles of design in typography:"
LONG = "asr/en/ljspeech/LJ001-0001.flac"
SECOND = "asr/en/ljspeech/LJ001-0009.flac"


def wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    return jiwer.wer(normalize(reference), normalize(hypothesis) or "<nothing>")


def ffmpeg(source: Path, out: Path, *args: str) -> Path:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), *args, str(out)],
                   check=True, capture_output=True)
    return out


ENCODINGS = {  # name: (file name, ffmpeg options)
    "wav": ("clip.wav", ["-c:a", "pcm_s16le"]),
    "mp3": ("clip.mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "mp3-no-id3-tag": ("bare.mp3", ["-c:a", "libmp3lame", "-b:a", "64k", "-write_id3v1", "0", "-id3v2_version", "0"]),
    "m4a": ("clip.m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "flac": ("clip.flac", ["-c:a", "flac"]),
    "ogg-vorbis": ("clip.ogg", ["-c:a", "libvorbis"]),
    "ogg-opus": ("clip.opus.ogg", ["-c:a", "libopus"]),
    "webm": ("clip.webm", ["-c:a", "libopus"]),
    "mp4": ("clip.mp4", ["-c:a", "aac", "-b:a", "64k"]),
}


@pytest.fixture(scope="module")
def clip(eval_dir, manifest) -> tuple[Path, str, float]:
    entry = manifest[CLIP]
    return eval_dir / CLIP, entry["reference_text"], entry["duration"]


@pytest.fixture(scope="module")
def encoded(clip, tmp_path_factory) -> dict[str, Path]:
    """The clip in every accepted container."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    folder = tmp_path_factory.mktemp("formats")
    return {name: ffmpeg(clip[0], folder / file, *args) for name, (file, args) in ENCODINGS.items()}


@pytest.fixture(scope="module")
def two_sentences(eval_dir, manifest, tmp_path_factory) -> tuple[Path, str]:
    """15 s WAV of two sentences (enough for several progress lines)."""
    audio = np.concatenate([sf.read(eval_dir / LONG, dtype="float32")[0], np.zeros(8000, np.float32),
                            sf.read(eval_dir / SECOND, dtype="float32")[0]])
    path = tmp_path_factory.mktemp("long") / "two.wav"
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path, f"{manifest[LONG]['reference_text']} {manifest[SECOND]['reference_text']}"


def silent_wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(int(seconds * 16000), np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def form(data: bytes, filename: str = "clip.bin", content_type: str = "application/octet-stream",
         field: str = "file", **fields: str) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field(field, data, filename=filename, content_type=content_type)
    for name, value in fields.items():
        body.add_field(name, value)
    return body


async def _request(method: str, url: str, **kwargs) -> tuple[int, str, bytes]:
    async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as response:
        return response.status, response.content_type, await response.read()


def request(method: str, url: str, **kwargs) -> tuple[int, str, bytes]:
    return asyncio.run(_request(method, url, **kwargs))


def post_json(url: str, **kwargs) -> tuple[int, dict]:
    status, kind, body = request("POST", url, **kwargs)
    assert kind == "application/json", (status, kind, body[:200])
    return status, json.loads(body)


def get_json(url: str, headers: dict | None = None) -> tuple[int, dict]:
    status, kind, body = request("GET", url, headers=headers)
    assert kind == "application/json", (status, kind, body[:200])
    return status, json.loads(body)


def assert_error(status: int, body: dict, expected: int, message: str) -> None:
    assert status == expected, body
    assert set(body) == {"error"} and body["error"]["code"] == expected
    assert body["error"]["type"] == "invalid_request_error"
    assert message in body["error"]["message"], body["error"]["message"]


def assert_still_serving(url: str) -> None:
    """No job left behind, and the next upload goes through the whole path normally."""
    deadline = time.monotonic() + 10
    while (files := get_json(url + "/status")[1]["files"])["running"] or files["queued"]:
        assert time.monotonic() < deadline, files
        time.sleep(0.1)
    status, doc = post_json(url + "/transcribe?language=en", data=silent_wav(),
                            headers={"Content-Type": "audio/wav"})
    assert status == 200 and doc["duration"] == 0.5 and doc["text"] == "", doc


def assert_transcript(doc: dict, reference: str, duration: float, bound: float = 0.2) -> float:
    assert doc["language"] == "en" and 0.5 < doc["language_probability"] <= 1
    assert abs(doc["duration"] - duration) < 0.1
    assert doc["processing_time"] > 0
    assert doc["segments"]
    for i, segment in enumerate(doc["segments"]):
        assert segment["id"] == i and 0 <= segment["start"] <= segment["end"] <= duration + 0.5
        assert segment["text"].strip() and segment["words"]
        for word in segment["words"]:
            assert word["word"].strip() and 0 <= word["start"] <= word["end"] <= duration + 0.5
            assert segment["start"] - 0.5 <= word["start"] and word["end"] <= segment["end"] + 0.5
    starts = [w["start"] for s in doc["segments"] for w in s["words"]]
    assert starts == sorted(starts)
    assert doc["text"].strip()
    error = wer(reference, doc["text"])
    assert error <= bound, doc["text"]
    return error


# -- every accepted format ------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_accepted_format_transcribes_with_segments_words_and_timing(server, clip, encoded, name):
    _path, reference, duration = clip
    status, doc = post_json(server.url + "/transcribe", data=form(encoded[name].read_bytes(), encoded[name].name))
    assert status == 200, doc
    error = assert_transcript(doc, reference, duration)
    print(f"{name} WER {error:.3f}: {doc['text']}")


def test_a_raw_audio_body_transcribes_with_query_options(server, clip, encoded):
    _path, reference, duration = clip
    status, doc = post_json(server.url + "/transcribe?language=en&prompt=Typography.",
                            data=encoded["mp3"].read_bytes(), headers={"Content-Type": "audio/mpeg"})
    assert status == 200, doc
    assert_transcript(doc, reference, duration)


# -- the OpenAI-compatible endpoint, through OpenAI's own client ----------------------------------

@pytest.fixture(scope="module")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.mark.parametrize("fmt", ["json", "verbose_json", "text", "srt", "vtt"])
def test_the_openai_client_gets_each_response_format(openai_client, clip, fmt):
    path, reference, duration = clip
    with open(path, "rb") as audio:
        result = openai_client.audio.transcriptions.create(model="whisper-1", file=audio, response_format=fmt,
                                                          language="en")
    if fmt == "json":
        text = result.text
    elif fmt == "verbose_json":
        text = result.text
        assert result.language == "en" and abs(result.duration - duration) < 0.1
        assert result.segments and result.words
        assert all(s.start <= s.end and s.text.strip() for s in result.segments)
        assert all(0 <= w.start <= w.end <= duration + 0.5 and w.word for w in result.words)
        assert [s.id for s in result.segments] == list(range(len(result.segments)))
    else:
        assert isinstance(result, str)
        text = result
        if fmt == "srt":
            assert result.startswith("1\n00:00:0") and " --> " in result and "," in result.splitlines()[1]
            text = " ".join(line for line in result.splitlines() if line and "-->" not in line and not line.isdigit())
        elif fmt == "vtt":
            assert result.startswith("WEBVTT\n\n00:00:0") and " --> " in result
            text = " ".join(line for line in result.splitlines()[1:] if line and "-->" not in line)
    error = wer(reference, text)
    print(f"openai {fmt} WER {error:.3f}: {text!r}")
    assert error <= 0.2, text


def test_the_openai_client_sees_a_bad_request_as_its_own_error(openai_client, clip):
    import openai

    with open(clip[0], "rb") as audio, pytest.raises(openai.BadRequestError) as refused:
        openai_client.audio.transcriptions.create(model="whisper-1", file=audio, language="klingon")
    assert "unknown language" in refused.value.message
    assert "unknown language" in refused.value.body["message"]


def test_the_openai_client_lists_the_model(openai_client, engine):
    assert [m.id for m in openai_client.models.list()] == [engine.model_name]


# -- progress --------------------------------------------------------------------------------

def read_ndjson(url: str, **kwargs) -> tuple[int, str, list[dict]]:
    async def run():
        async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as response:
            lines = [json.loads(raw) async for raw in response.content if raw.strip()]
            return response.status, response.content_type, lines
    return asyncio.run(run())


def test_progress_lines_are_monotonic_and_end_with_the_result(server, two_sentences):
    path, reference = two_sentences
    total = sf.info(path).duration
    status, kind, lines = read_ndjson(server.url + "/transcribe?progress=true",
                                      data=form(path.read_bytes(), path.name))
    assert status == 200 and kind == "application/x-ndjson"
    *progress, result = lines
    assert len(progress) >= 2 and all(line["type"] == "progress" for line in progress)
    assert progress[0] == {"type": "progress", "done": 0.0, "total": round(total, 1)}
    done = [line["done"] for line in progress]
    assert done == sorted(done) and done[-1] <= progress[0]["total"] and done[-1] > 0
    assert all(line["total"] == progress[0]["total"] for line in progress)
    assert result["type"] == "result"
    error = assert_transcript(result, reference, total)
    print(f"progress result WER {error:.3f}")


def test_an_ndjson_accept_header_asks_for_progress_too(server, clip, encoded):
    status, kind, lines = read_ndjson(server.url + "/transcribe", data=encoded["flac"].read_bytes(),
                                      headers={"Content-Type": "audio/flac", "Accept": "application/x-ndjson"})
    assert status == 200 and kind == "application/x-ndjson"
    assert lines[0]["type"] == "progress" and lines[-1]["type"] == "result"
    assert wer(clip[1], lines[-1]["text"]) <= 0.2


def test_the_cli_transcribes_a_file_on_a_running_server(server, two_sentences, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    path, reference = two_sentences
    assert main(["transcribe", str(path), "--server", server.url]) == 0
    out, err = capsys.readouterr()
    error = wer(reference, out)
    print(f"cli WER {error:.3f}")
    assert error <= 0.2, out
    assert f"on {server.url}, language en" in err


def test_the_cli_renders_subtitles_from_the_server(server, clip, encoded, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    assert main(["transcribe", str(encoded["m4a"]), "--server", server.url + "/", "--format", "srt",
                 "--language", "en"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("1\n00:00:0") and "-->" in out


def test_the_cli_reports_what_the_server_refused(server, tmp_path, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n" * 20)
    assert main(["transcribe", str(notes), "--server", server.url]) == 2
    err = capsys.readouterr().err
    assert "the server said" in err and "not a supported audio format" in err


def test_the_cli_reports_an_unreachable_server(tmp_path, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    audio = tmp_path / "a.wav"
    audio.write_bytes(silent_wav())
    assert main(["transcribe", str(audio), "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err


# -- errors ----------------------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)
TRUNCATED = (b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
             b"Content-Type: audio/wav\r\n\r\nRIFF")
MULTIPART = "multipart/form-data; boundary=xyz"

ERRORS = {  # name: (route, request arguments, status, part of the message)
    "random-bytes": ("/transcribe", lambda a: {"data": form(os.urandom(20000))}, 415, "not a supported audio format"),
    "empty-file": ("/transcribe", lambda a: {"data": form(b"", "empty.wav", "audio/wav")}, 400, "file is empty"),
    "text-file": ("/transcribe", lambda a: {"data": form(b"hello\n" * 100, "a.txt", "text/plain")}, 415,
                  "not a supported audio format"),
    "png": ("/transcribe", lambda a: {"data": form(PNG, "a.png", "image/png")}, 415, "not a supported audio format"),
    "json-body": ("/transcribe", lambda a: {"json": {"file": "clip.wav"}}, 415, "unsupported content type"),
    "text-plain-body": ("/transcribe", lambda a: {"data": b"hi", "headers": {"Content-Type": "text/plain"}}, 415,
                        "unsupported content type"),
    "no-content-type": ("/transcribe", lambda a: {"data": b"hi", "headers": {"Content-Type": ""}}, 415,
                        "not a supported audio format"),  # octet-stream, by HTTP's default: sniffed, refused
    "multipart-without-file": ("/transcribe", lambda a: {"data": _fields(model="whisper-1")}, 400, "no file"),
    "audio-in-a-field-not-named-file": ("/transcribe", lambda a: {"data": form(a["wav"], "clip.wav", field="audio")},
                                        400, "field named 'file'"),
    "multipart-without-boundary": ("/transcribe", lambda a: {"data": b"--xyz\r\n\r\n",
                                                                 "headers": {"Content-Type": "multipart/form-data"}},
                                   400, "malformed multipart"),
    "multipart-junk": ("/transcribe", lambda a: {"data": b"no boundary anywhere",
                                                 "headers": {"Content-Type": MULTIPART}}, 400, "malformed multipart"),
    "multipart-truncated": ("/transcribe", lambda a: {"data": TRUNCATED, "headers": {"Content-Type": MULTIPART}},
                            400, "malformed multipart"),
    "multipart-part-header-without-colon": ("/transcribe", lambda a: {
        "data": b"--xyz\r\nnot a header\r\n\r\ndata\r\n--xyz--\r\n", "headers": {"Content-Type": MULTIPART}},
        400, "malformed multipart body: Invalid HTTP header"),
    "multipart-part-header-too-long": ("/v1/audio/transcriptions", lambda a: {
        "data": b"--xyz\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\ndata\r\n--xyz--\r\n",
        "headers": {"Content-Type": MULTIPART}},
        400, "malformed multipart body: Got more than"),
    "multipart-nested": ("/transcribe", lambda a: {
        "data": (b"--xyz\r\nContent-Type: multipart/mixed; boundary=abc\r\n"
              b"Content-Disposition: form-data; name=\"file\"\r\n\r\n--abc\r\n\r\nhi\r\n--abc--\r\n--xyz--\r\n"),
        "headers": {"Content-Type": MULTIPART}}, 400, "nested multipart"),
    "header-then-junk": ("/transcribe", lambda a: {"data": form(b"fLaC" + os.urandom(5000), "x.flac")}, 400,
                         "not a decodable audio file"),
    "wav-header-without-audio": ("/transcribe", lambda a: {"data": form(a["wav"][:44], "x.wav")}, 400,
                                 "x.wav: not a decodable audio file"),
    "bad-language": ("/transcribe", lambda a: {"data": form(a["wav"], "clip.wav", language="xx")}, 400,
                     "unknown language"),
    "bad-language-in-query": ("/transcribe?language=english-please", lambda a: {"data": form(a["wav"])}, 400,
                              "unknown language"),
    "openai-bad-response-format": ("/v1/audio/transcriptions",
                                   lambda a: {"data": form(a["wav"], "clip.wav", model="whisper-1",
                                                            response_format="xml")}, 400, "response_format"),
    "openai-bad-language": ("/v1/audio/transcriptions",
                            lambda a: {"data": form(a["wav"], "clip.wav", model="whisper-1", language="zz")}, 400,
                            "unknown language"),
    "openai-no-file": ("/v1/audio/transcriptions", lambda a: {"data": _fields(model="whisper-1")}, 400, "no file"),
    "openai-garbage": ("/v1/audio/transcriptions", lambda a: {"data": form(os.urandom(3000), model="whisper-1")},
                       415, "not a supported audio format"),
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
        playlist = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n"
                    f"#EXTINF:5.0,\nfile://{fifo}\n#EXTINF:5.0,\n{fifo}\n#EXTINF:5.0,\n{encoded['wav']}\n"
                    f"#EXTINF:5.0,\nhttp://127.0.0.1:{watcher.server_address[1]}/segment.ts\n#EXT-X-ENDLIST\n").encode()
        if content_type == "multipart":
            arguments = {"data": form(playlist, "list.m3u8", "application/vnd.apple.mpegurl")}
        else:
            arguments = {"data": playlist, "headers": {"Content-Type": content_type}}
        started = time.monotonic()
        status, body = post_json(server.url + "/transcribe", **arguments)
        refusal = "unsupported content type" if content_type.startswith("application/") else \
            "not a supported audio format"
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
    from roomscribe.web.app import ServerConfig

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
    status, body = post_json(limited.url + "/transcribe", data=b"RIFF" + bytes(4 * 1024 ** 2),
                             headers={"Content-Type": "audio/wav"})
    assert_error(status, body, 413, "upload larger than the limit")
    assert_still_serving(limited.url)


@pytest.mark.parametrize("route", ["/transcribe", "/v1/audio/transcriptions"])
def test_audio_over_the_duration_limit_gets_413(limited, encoded, route):
    data = encoded["mp3"].read_bytes()  # 35 kB: under the size limit, but 4.3 s
    assert len(data) < 0.05 * 1024 ** 2
    status, body = post_json(limited.url + route, data=form(data, "clip.mp3", model="whisper-1"))
    assert_error(status, body, 413, "longer than the 3 s limit")
    assert_still_serving(limited.url)


# -- clients that go away ------------------------------------------------------------------------------

async def _send_then_drop(url: str, head: bytes, body: bytes, read_first_line: bool = False,
                          wait: float = 0.0) -> bytes:
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
    head = (f"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(data) * 4}\r\n\r\n").encode()
    asyncio.run(_send_then_drop(server.url, head, data, wait=0.3))  # a quarter of the promised body
    assert_still_serving(server.url)
    assert get_json(server.url + "/status")[1]["files"]["running"] == 0


@pytest.mark.parametrize("progress", [True, False], ids=["progress", "plain"])
def test_a_client_that_disconnects_mid_transcription_leaves_the_server_serving(server, two_sentences, progress):
    data = two_sentences[0].read_bytes()
    query = "?progress=true" if progress else ""
    head = (f"POST /transcribe{query} HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
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
    from roomscribe.web.app import ServerConfig

    with running_server(engine, ServerConfig(port=0, api_key="secret")) as running:
        yield running


BEARER = {"Authorization": "Bearer secret"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "secret"},
                                     {"Authorization": "Basic c2VjcmV0"}],
                         ids=["none", "wrong-key", "no-bearer-scheme", "basic"])
def test_a_keyed_server_refuses_every_data_route_without_the_key(secured, encoded, headers):
    for method, path, kwargs in [("GET", "/status", {}), ("GET", "/v1/models", {}),
                                 ("POST", "/transcribe", {"data": form(encoded["wav"].read_bytes())}),
                                 ("POST", "/v1/audio/transcriptions", {"data": form(os.urandom(100))}),
                                 ("GET", "/asr", {}), ("GET", "/sessions/abc/transcript", {}),
                                 ("POST", "/whip", {"data": b"v=0", "headers": {"Content-Type": "application/sdp"}})]:
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
    from roomscribe.web.app import (
        ConfigError,
        ServerConfig,
        check_exposure,
        is_loopback,
    )

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


@pytest.mark.parametrize("argv,message", [
    (["serve", "--host", "0.0.0.0"], "ROOMSCRIBE_API_KEY"),
    (["serve", "--host", "192.168.1.10", "--port", "0"], "--no-auth"),
    (["serve", "--certfile", "cert.pem"], "--certfile and --keyfile go together"),
    (["serve", "--language", "xx"], "unknown language"),
])
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
