"""Shared pieces of the /asr tests: real speech, a WebSocket conversation, status polling."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

from .speech import read_audio
from .uploads import ffmpeg

LJ = "asr/en/ljspeech"
CLOCK = re.compile(r"^\d+:\d{2}:\d{2}$")
UPDATE_KEYS = {
    "status",
    "lines",
    "buffer_transcription",
    "buffer_diarization",
    "buffer_translation",
    "remaining_time_transcription",
    "remaining_time_diarization",
}


# -- helpers ------------------------------------------------------------------------------


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


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


def encode(source: Path, out: Path, *args: str) -> bytes:
    return ffmpeg(source, out, *args).read_bytes()


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


async def converse(
    url: str,
    frames,
    *,
    query: str = "",
    realtime: bool = False,
    interval: float = 0.0,
    end: bool = True,
    timeout: float = 120.0,
    headers: dict | None = None,
) -> Conversation:
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


LINE_KEYS = {"speaker", "text", "start", "end", "detected_language"}


def assert_well_formed(
    conv: Conversation,
    mode: str = "full",
    worklet: bool = True,
    diarized: bool = False,
    translated: tuple[str, ...] = (),
) -> None:
    """Every message as WhisperLiveKit clients expect it; `speaker` is 1 unless the stream is
    diarized (then 1, 2, ... by voice). `translated`: the `translate_to` languages; every line
    then has `translation` (in the first, "" until it came) and `translations` (all of them)."""
    assert conv.messages[0] == {"type": "config", "useAudioWorklet": worklet, "mode": mode}
    for update in conv.updates:
        if mode == "full":
            assert set(update) == UPDATE_KEYS, update
        assert update["status"] in ("active_transcription", "no_audio_detected")
        assert update["buffer_diarization"] == ""
        assert isinstance(update["buffer_translation"], str)
        if not translated:
            assert update["buffer_translation"] == ""
        assert update["remaining_time_diarization"] == 0.0
        for line in update.get("lines", []) + update.get("new_lines", []):
            if translated:
                assert set(line) <= LINE_KEYS | {"translation", "translations"}, line
                assert list(line["translations"]) == list(translated), line
                assert line["translation"] == line["translations"][translated[0]], line
            else:
                assert set(line) <= LINE_KEYS, line
            assert (line["speaker"] >= 1 if diarized else line["speaker"] == 1) and line["text"].strip(), line
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
