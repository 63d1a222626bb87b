"""`/asr`: the WhisperLiveKit-compatible WebSocket of `roomscribe serve`, driven by a real
client (aiohttp) over real speech: PCM at 1x real time, compressed browser audio, the diff
protocol, per-stream options, and clients that misbehave.

WER: whisper_normalizer's EnglishTextNormalizer on both sides, then jiwer.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from conftest import read_audio
from serving import running_server

LJ = "asr/en/ljspeech"
CLOCK = re.compile(r"^\d+:\d{2}:\d{2}$")
UPDATE_KEYS = {"status", "lines", "buffer_transcription", "buffer_diarization", "buffer_translation",
               "remaining_time_transcription", "remaining_time_diarization"}


# -- helpers ------------------------------------------------------------------------------

def wer(reference: str, hypothesis: str) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    return jiwer.wer(normalize(reference), normalize(hypothesis) or "<nothing>")


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@dataclass
class Speech:
    pcm: bytes  # s16le 16 kHz mono
    text: str
    duration: float
    wav: Path


def make_speech(eval_dir: Path, manifest: dict, names: list[str], out: Path, gap: float = 0.5) -> Speech:
    keys = [f"{LJ}/{name}.flac" for name in names]
    silence = np.zeros(int(gap * 16000), np.float32)
    audio = np.concatenate([part for key in keys for part in (read_audio(eval_dir / key), silence)])
    import soundfile as sf

    sf.write(out, audio, 16000, subtype="PCM_16")
    return Speech(pcm16(audio), " ".join(manifest[key]["reference_text"] for key in keys), len(audio) / 16000, out)


@pytest.fixture(scope="module")
def speech_long(eval_dir, manifest, tmp_path_factory) -> Speech:
    """24 s of read speech: three LJ Speech sentences with short pauses."""
    return make_speech(eval_dir, manifest, ["LJ001-0001", "LJ001-0009", "LJ001-0010"],
                       tmp_path_factory.mktemp("asr") / "long.wav")


@pytest.fixture(scope="module")
def speech_mid(eval_dir, manifest, tmp_path_factory) -> Speech:
    """14 s: three sentences."""
    return make_speech(eval_dir, manifest, ["LJ001-0035", "LJ001-0107", "LJ001-0174"],
                       tmp_path_factory.mktemp("asr") / "mid.wav")


@pytest.fixture(scope="module")
def speech_short(eval_dir, manifest, tmp_path_factory) -> Speech:
    """One 6.5 s sentence."""
    return make_speech(eval_dir, manifest, ["LJ001-0009"], tmp_path_factory.mktemp("asr") / "short.wav",
                       gap=0.3)


def encode(source: Path, out: Path, *args: str) -> bytes:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), *args, str(out)],
                   check=True, capture_output=True)
    return out.read_bytes()


@dataclass
class Conversation:
    messages: list[dict] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # seconds after connecting, per message
    end_sent_at: float | None = None  # when the end frame went (None: never)
    close_code: int | None = None
    send_failed: bool = False

    @property
    def updates(self) -> list[dict]:
        return [m for m in self.messages if "lines" in m or m.get("type") == "diff"]

    @property
    def errors(self) -> list[str]:
        return [m["error"] for m in self.messages if "error" in m]

    def text(self) -> str:
        return " ".join(line["text"] for line in self.updates[-1]["lines"])


async def converse(url: str, frames, *, query: str = "", realtime: bool = False, interval: float = 0.0,
                   end: bool = True, timeout: float = 120.0, headers: dict | None = None) -> Conversation:
    """Open `/asr`, send `frames` (bytes: binary, str: text), then the end frame, and read
    every message until the server closes. `realtime`: PCM paced by the wall clock."""
    conv = Conversation()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{url}/asr{query}", headers=headers) as ws:
        start = time.monotonic()

        async def read():
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    conv.messages.append(json.loads(msg.data))
                    conv.times.append(time.monotonic() - start)

        reader = asyncio.ensure_future(read())
        sent = 0.0
        try:
            for frame in frames:
                if reader.done():
                    break
                if isinstance(frame, str):
                    await ws.send_str(frame)
                    continue
                await ws.send_bytes(frame)
                if realtime:
                    sent += len(frame) / 32000
                    await asyncio.sleep(max(0.0, start + sent - time.monotonic()))
                elif interval:
                    await asyncio.sleep(interval)
            if end and not reader.done():
                await ws.send_bytes(b"")
                conv.end_sent_at = time.monotonic() - start
        except ConnectionResetError:
            conv.send_failed = True
        await asyncio.wait_for(reader, timeout)
        conv.close_code = ws.close_code
    return conv


def talk(url: str, frames, **kwargs) -> Conversation:
    return asyncio.run(converse(url, frames, **kwargs))


async def get_json(url: str, path: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http, http.get(url + path) as response:
        return response.status, await response.json(content_type=None)


def server_status(url: str) -> dict:
    status, body = asyncio.run(get_json(url, "/status"))
    assert status == 200
    return body


def decode_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "roomscribe-decode" and t.is_alive())


def wait_until_idle(url: str, timeout: float = 5.0) -> dict:
    """Poll /status until no /asr connection and no scheduler stream is left."""
    deadline = time.monotonic() + timeout
    while True:
        status = server_status(url)
        if status["asr_connections"] == 0 and status["scheduler"]["streams"] == 0:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"the server still holds the stream after {timeout} s: {status}")
        time.sleep(0.1)


def assert_well_formed(conv: Conversation, mode: str = "full", worklet: bool = True) -> None:
    assert conv.messages[0] == {"type": "config", "useAudioWorklet": worklet, "mode": mode}
    for update in conv.updates:
        if mode == "full":
            assert set(update) == UPDATE_KEYS, update
        assert update["status"] in ("active_transcription", "no_audio_detected")
        assert update["buffer_diarization"] == "" and update["buffer_translation"] == ""
        assert update["remaining_time_diarization"] == 0.0
        for line in update.get("lines", []) + update.get("new_lines", []):
            assert set(line) <= {"speaker", "text", "start", "end", "detected_language"}
            assert line["speaker"] == 1 and line["text"].strip()
            assert CLOCK.match(line["start"]) and CLOCK.match(line["end"]), line
            assert seconds(line["start"]) <= seconds(line["end"])


def seconds(clock: str) -> int:
    h, m, s = map(int, clock.split(":"))
    return h * 3600 + m * 60 + s


def assert_finished(conv: Conversation) -> None:
    """The end: a last update with nothing left, then ready_to_stop, then a clean close."""
    assert conv.errors == []
    assert conv.messages[-1] == {"type": "ready_to_stop"}
    last = conv.messages[-2]
    assert last["remaining_time_transcription"] == 0.0 and last["buffer_transcription"] == ""
    assert conv.close_code == 1000


# -- a live client at 1x ------------------------------------------------------------------

def test_pcm_at_real_time_gets_interim_buffers_then_committed_lines_that_match_the_reference(server, speech_long):
    conv = talk(server.url, chunks(speech_long.pcm, 3200), realtime=True)  # 100 ms chunks, wall clock

    assert_well_formed(conv)
    assert_finished(conv)
    assert conv.end_sent_at >= speech_long.duration - 0.5  # really paced at 1x
    while_speaking = [u for u, t in zip(conv.messages, conv.times) if "lines" in u and t < conv.end_sent_at]
    # Interim text shows up while the speaker talks, and is committed into lines as it goes,
    # not only once the audio ends.
    assert sum(1 for u in while_speaking if u["buffer_transcription"]) >= 10
    assert len(while_speaking[-1]["lines"]) >= 2
    first_text = next(t for u, t in zip(conv.messages, conv.times) if "lines" in u and u["buffer_transcription"])
    assert first_text < 3.0, "the first interim words come within seconds of speech"
    # The server keeps up: little audio waiting at any time, and the end comes promptly.
    remaining = [u["remaining_time_transcription"] for u in while_speaking]
    assert float(np.median(remaining)) < 1.5 and max(remaining) < 5.0, remaining
    assert conv.times[-1] - conv.end_sent_at < 5.0

    final = conv.messages[-2]
    assert final["status"] == "active_transcription"
    assert all(line["detected_language"] == "en" for line in final["lines"])
    starts = [seconds(line["start"]) for line in final["lines"]]
    assert starts == sorted(starts) and starts[0] <= 1
    assert abs(seconds(final["lines"][-1]["end"]) - speech_long.duration) <= 2
    error = wer(speech_long.text, conv.text())
    print(f"1x PCM stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.2, conv.text()
    assert wait_until_idle(server.url)["scheduler"]["streams"] == 0


# -- compressed browser audio ---------------------------------------------------------------

@pytest.mark.parametrize("container,args,query,worklet", [
    ("webm", ["-c:a", "libopus", "-b:a", "32k"], "", True),  # Chrome/Firefox MediaRecorder
    ("ogg", ["-c:a", "libopus", "-b:a", "32k"], "?input=encoded", False),
    ("mp4", ["-c:a", "aac", "-b:a", "48k", "-movflags", "frag_keyframe+empty_moov"], "", True),  # Safari: fragmented
], ids=["webm-opus", "ogg-opus-input-encoded", "fragmented-mp4-aac"])
def test_compressed_browser_audio_streamed_in_pieces_is_decoded_and_transcribed(server, speech_mid, tmp_path,
                                                                                container, args, query, worklet):
    data = encode(speech_mid.wav, tmp_path / f"speech.{container}", *args)
    conv = talk(server.url, chunks(data, 2000), query=query, interval=0.02)  # faster than 1x

    assert_well_formed(conv, worklet=worklet)
    assert_finished(conv)
    error = wer(speech_mid.text, conv.text())
    print(f"{container} stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.25, conv.text()
    wait_until_idle(server.url)
    assert decode_threads() == 0


def test_an_mp4_with_its_index_at_the_end_cannot_stream_and_gets_a_clear_error(server, speech_short, tmp_path):
    data = encode(speech_short.wav, tmp_path / "plain.mp4", "-c:a", "aac")  # moov after the audio: needs seeking
    conv = talk(server.url, chunks(data, 4000))
    assert conv.errors and "could not decode" in conv.errors[0]
    assert {"type": "ready_to_stop"} not in conv.messages
    assert conv.close_code == 1007
    wait_until_idle(server.url)


# -- the diff protocol ----------------------------------------------------------------------

def reconstruct(msg: dict, lines: list[dict]) -> dict:
    """WhisperLiveKit's documented client algorithm (docs/API.md, 'Diff Protocol')."""
    if msg["type"] == "snapshot":
        lines.clear()
        lines.extend(msg.get("lines", []))
        return msg
    if msg.get("lines_pruned", 0) > 0:
        del lines[:msg["lines_pruned"]]
    lines.extend(msg.get("new_lines", []))
    return {"lines": lines[:], "buffer_transcription": msg.get("buffer_transcription", ""),
            "remaining_time_transcription": msg.get("remaining_time_transcription", 0)}


def glued_words(buffers: list[str], transcript: str) -> list[str]:
    """Buffer words that are two adjacent transcript words run together ('morecompletely')."""
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    words = normalize(transcript).split()
    joined = {a + b for a, b in itertools.pairwise(words)} - set(words)
    return [w for buffer in buffers for w in normalize(buffer).split() if w in joined]


def test_diff_mode_sends_a_snapshot_then_diffs_that_rebuild_the_servers_lines(server, speech_mid, monkeypatch):
    from roomscribe.web import asr_socket

    truth: list[list[dict]] = []  # the full line list behind each update, as the server saw it
    state = asr_socket.AsrSession.state

    def recording(self):
        out = state(self)
        if self.mode == "diff":
            truth.append(json.loads(json.dumps(out["lines"])))
        return out

    monkeypatch.setattr(asr_socket.AsrSession, "state", recording)
    conv = talk(server.url, chunks(speech_mid.pcm, 3200), query="?mode=diff", interval=0.06)  # 1.7x

    assert_well_formed(conv, mode="diff")
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    updates = conv.messages[1:-1]
    assert updates[0]["type"] == "snapshot" and all(u["type"] == "diff" for u in updates[1:])
    assert [u["seq"] for u in updates] == list(range(1, len(updates) + 1))
    assert len(updates) == len(truth)
    lines: list[dict] = []
    buffers = []
    for update, expected in zip(updates, truth):
        assert "lines" not in update or update["type"] == "snapshot"
        state_now = reconstruct(update, lines)
        if update["type"] == "diff":
            assert len(lines) == update["n_lines"], "out of sync"
            assert "new_lines" not in update or update["new_lines"]
        assert lines == expected
        buffers.append(state_now["buffer_transcription"])
    assert any(buffers), "interim text travels in the buffer"
    assert buffers[-1] == "" and updates[-1]["remaining_time_transcription"] == 0.0
    text = " ".join(line["text"] for line in lines)
    assert len(lines) >= 2
    error = wer(speech_mid.text, text)
    print(f"diff-mode WER {error:.3f}: {text}")
    assert error <= 0.25, text
    # An open line's committed words and its interim tail make one buffer, spaced as words.
    assert glued_words(buffers, text + " " + speech_mid.text) == []


# -- per-stream options -----------------------------------------------------------------------

def test_a_forced_language_is_accepted_and_carried_on_every_line(server, speech_short):
    conv = talk(server.url, chunks(speech_short.pcm, 3200), query="?language=ko", interval=0.03)
    assert_well_formed(conv)
    assert_finished(conv)
    lines = conv.messages[-2]["lines"]
    assert lines and all(line["detected_language"] == "ko" for line in lines)


def test_the_alignatt_policy_streams_the_same_speech(server, speech_mid):
    conv = talk(server.url, chunks(speech_mid.pcm, 3200), query="?policy=alignatt&language=en", interval=0.04)
    assert_well_formed(conv)
    assert_finished(conv)
    assert any(u["buffer_transcription"] for u in conv.updates)
    error = wer(speech_mid.text, conv.text())
    print(f"alignatt stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.25, conv.text()


def test_set_language_mid_stream_switches_the_following_lines(server, eval_dir, manifest):
    first = pcm16(read_audio(eval_dir / LJ / "LJ001-0035.flac")) + bytes(16000)
    second = pcm16(read_audio(eval_dir / LJ / "LJ001-0174.flac")) + bytes(16000)
    frames = chunks(first, 3200) + [json.dumps({"type": "set_language", "language": "ko"})] + chunks(second, 3200)
    conv = talk(server.url, frames, query="?language=en", interval=0.03)
    assert_finished(conv)
    languages = [line["detected_language"] for line in conv.messages[-2]["lines"]]
    assert languages[0] == "en" and languages[-1] == "ko", languages


@pytest.mark.parametrize("query,message", [
    ("language=xx", "unknown language"),
    ("policy=nope", "unknown policy"),
    ("mode=x", "mode is full or diff"),
    ("input=wav", "input is auto, pcm or encoded"),
])
def test_bad_query_options_are_refused_with_400_before_upgrading(server, query, message):
    async def attempt():
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{server.url}/asr?{query}")
            # The same request by hand: a JSON error body, and no 101.
            key = base64.b64encode(os.urandom(16)).decode()
            headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                       "Sec-WebSocket-Key": key}
            async with http.get(f"{server.url}/asr?{query}", headers=headers) as response:
                return refused.value.status, response.status, response.content_type, await response.json()

    handshake, status, kind, body = asyncio.run(attempt())
    assert handshake == 400 and status == 400 and kind == "application/json"
    assert message in body["error"]["message"] and body["error"]["code"] == 400
    assert server_status(server.url)["asr_connections"] == 0


def test_a_plain_http_get_on_asr_is_told_it_is_a_websocket(server):
    status, body = asyncio.run(get_json(server.url, "/asr"))
    assert status == 426 and "WebSocket" in body["error"]["message"]


# -- bad input never hurts the server -------------------------------------------------------------

@pytest.mark.parametrize("head", [b"OggS", b"\x1a\x45\xdf\xa3", b"fLaC"], ids=["ogg", "webm", "flac"])
def test_junk_behind_a_container_header_gets_an_error_and_a_clean_close(server, speech_short, head):
    junk = head + np.random.default_rng(7).bytes(6000)
    conv = talk(server.url, [junk[:3000], junk[3000:]], timeout=20)
    assert conv.messages[0]["type"] == "config"
    assert len(conv.errors) == 1 and "could not decode the audio stream" in conv.errors[0]
    assert {"type": "ready_to_stop"} not in conv.messages
    assert conv.close_code == 1007
    wait_until_idle(server.url)
    assert decode_threads() == 0
    after = talk(server.url, chunks(speech_short.pcm, 3200), interval=0.02)
    assert_finished(after)
    assert wer(speech_short.text, after.text()) <= 0.25


def test_pcm_sent_as_encoded_input_is_refused_with_an_error(server, speech_short):
    conv = talk(server.url, chunks(speech_short.pcm, 3200)[5:10], query="?input=encoded", timeout=20)
    assert conv.messages[0] == {"type": "config", "useAudioWorklet": False, "mode": "full"}
    assert len(conv.errors) == 1 and "not a supported audio stream" in conv.errors[0]
    assert conv.close_code == 1003
    wait_until_idle(server.url)


def test_malformed_text_messages_get_an_error_and_the_stream_goes_on(server, speech_short):
    frames = chunks(speech_short.pcm, 3200)
    half = len(frames) // 2
    frames = frames[:half] + ["{not json", "[1, 2]", json.dumps({"type": "dance"}),
                              json.dumps({"type": "set_language", "language": "xx"})] + frames[half:]
    conv = talk(server.url, frames, interval=0.02)
    assert len(conv.errors) == 4 and all(e.startswith("bad message") for e in conv.errors)
    assert "unknown message type 'dance'" in conv.errors[2] and "unknown language" in conv.errors[3]
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    assert conv.messages[-2]["remaining_time_transcription"] == 0.0
    text = " ".join(line["text"] for line in conv.messages[-2]["lines"])
    assert wer(speech_short.text, text) <= 0.25, text


def test_a_stop_message_ends_the_audio_like_the_empty_frame(server, speech_short):
    frames = chunks(speech_short.pcm, 3200) + [json.dumps({"type": "stop"})]
    conv = talk(server.url, frames, interval=0.02, end=False)
    assert_finished(conv)
    assert wer(speech_short.text, conv.text()) <= 0.25


def test_odd_length_pcm_chunks_are_stitched_back_into_samples(server, speech_short):
    data = speech_short.pcm
    sizes = [1, 3201, 2999, 777, 1023]
    frames, i, k = [], 0, 0
    while i < len(data):
        frames.append(data[i:i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    conv = talk(server.url, frames, interval=0.01)
    assert_finished(conv)
    error = wer(speech_short.text, conv.text())
    assert error <= 0.25, conv.text()


def test_pcm_chunks_that_happen_to_start_like_a_container_stay_pcm(server, speech_short):
    """Only the first bytes choose PCM or a decoder; later PCM that starts with 'OggS' or
    'ID3' (valid, if loud, samples) must not switch the stream to a decoder."""
    frames = chunks(speech_short.pcm, 3200)
    for i, magic in zip((3, 8, 13, 20), (b"OggS", b"ID3\x04", b"\x1a\x45\xdf\xa3", b"fLaC")):
        frames[i] = magic + frames[i][len(magic):]
    conv = talk(server.url, frames, interval=0.02)
    assert_finished(conv)
    assert wer(speech_short.text, conv.text()) <= 0.25, conv.text()


async def raw_websocket(url: str, path: str):
    """A WebSocket opened by hand, so that the test can drop its TCP connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def ws_frame(payload: bytes) -> bytes:
    """A masked binary frame, as a client sends it."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    body = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + body.tobytes()


@pytest.mark.parametrize("how", ["close-without-end", "tcp-drop", "tcp-drop-while-decoding-webm",
                                 "tcp-drop-right-after-the-end-frame"])
def test_a_client_that_vanishes_mid_stream_is_freed_and_the_next_one_is_served(server, speech_short, tmp_path, how,
                                                                               caplog):
    if how.endswith("webm"):
        payload = encode(speech_short.wav, tmp_path / "speech.webm", "-c:a", "libopus")
    else:
        payload = speech_short.pcm

    async def vanish() -> dict:
        pieces = chunks(payload, 1000 if how.endswith("webm") else 3200)[:12]  # about 3 s of audio
        if how == "close-without-end":
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{server.url}/asr")
                for piece in pieces:
                    await ws.send_bytes(piece)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                during = (await get_json(server.url, "/status"))[1]
                await ws.close()  # a close frame, but no end of audio
                return during
        _reader, writer = await raw_websocket(server.url, "/asr")
        for piece in pieces:
            writer.write(ws_frame(piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        during = (await get_json(server.url, "/status"))[1]
        if how.endswith("end-frame"):
            writer.write(ws_frame(b""))  # the server goes on to caption the tail for nobody
            await writer.drain()
        writer.transport.abort()  # no close frame, no FIN handshake: the connection is just gone
        return during

    during = asyncio.run(vanish())
    assert during["asr_connections"] == 1 and during["scheduler"]["streams"] == 1
    wait_until_idle(server.url, timeout=5.0)
    deadline = time.monotonic() + 5
    while decode_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert decode_threads() == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # not a server fault
    after = talk(server.url, chunks(speech_short.pcm, 3200), interval=0.02)
    assert_finished(after)
    assert wer(speech_short.text, after.text()) <= 0.25


def test_streams_over_the_live_limit_get_503_and_the_slot_frees_when_one_ends(engine, speech_short):
    from roomscribe.web.app import ServerConfig

    with running_server(engine, ServerConfig(port=0, max_live_streams=1)) as small:
        async def scenario():
            async with aiohttp.ClientSession() as http:
                first = await http.ws_connect(f"{small.url}/asr")
                assert (await first.receive_json())["type"] == "config"
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{small.url}/asr")
                await first.send_bytes(b"")
                while (await first.receive_json()).get("type") != "ready_to_stop":
                    pass
                await first.close()
            return refused.value.status

        assert asyncio.run(scenario()) == 503
        wait_until_idle(small.url)
        conv = talk(small.url, chunks(speech_short.pcm, 3200)[:10])
        assert_finished(conv)
