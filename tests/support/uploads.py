"""Shared pieces of the file-transcription tests: real clips in every format, request helpers."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile as sf

from .speech import wer

CLIP = "asr/en/ljspeech/LJ001-0107.flac"  # 4.3 s: "To say a few words on the principles of design in typography:"
LONG = "asr/en/ljspeech/LJ001-0001.flac"
SECOND = "asr/en/ljspeech/LJ001-0009.flac"


def ffmpeg(source: Path, out: Path, *args: str) -> Path:
    """`source` encoded by the ffmpeg command into `out` (skips the test without ffmpeg)."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), *args, str(out)],
        check=True,
        capture_output=True,
    )
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


def silent_wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(int(seconds * 16000), np.float32), 16000, format="WAV", subtype="PCM_16")
    return out.getvalue()


def form(
    data: bytes,
    filename: str = "clip.bin",
    content_type: str = "application/octet-stream",
    field: str = "file",
    **fields: str,
) -> aiohttp.FormData:
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
    status, doc = post_json(url + "/transcribe?language=en", data=silent_wav(), headers={"Content-Type": "audio/wav"})
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
