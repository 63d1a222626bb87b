"""Fixtures of the server tests: recordings in the shapes the doors take."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.asr import Speech, make_speech
from support.uploads import CLIP, ENCODINGS, LONG, SECOND, ffmpeg


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
    audio = np.concatenate(
        [
            sf.read(eval_dir / LONG, dtype="float32")[0],
            np.zeros(8000, np.float32),
            sf.read(eval_dir / SECOND, dtype="float32")[0],
        ]
    )
    path = tmp_path_factory.mktemp("long") / "two.wav"
    sf.write(path, audio, 16000, subtype="PCM_16")
    return path, f"{manifest[LONG]['reference_text']} {manifest[SECOND]['reference_text']}"


@pytest.fixture(scope="module")
def speech_long(eval_dir, manifest, tmp_path_factory) -> Speech:
    """24 s of read speech: three LJ Speech sentences with short pauses."""
    return make_speech(
        eval_dir, manifest, ["LJ001-0001", "LJ001-0009", "LJ001-0010"], tmp_path_factory.mktemp("asr") / "long.wav"
    )


@pytest.fixture(scope="module")
def speech_mid(eval_dir, manifest, tmp_path_factory) -> Speech:
    """14 s: three sentences."""
    return make_speech(
        eval_dir, manifest, ["LJ001-0035", "LJ001-0107", "LJ001-0174"], tmp_path_factory.mktemp("asr") / "mid.wav"
    )


@pytest.fixture(scope="module")
def speech_short(eval_dir, manifest, tmp_path_factory) -> Speech:
    """One 6.5 s sentence."""
    return make_speech(eval_dir, manifest, ["LJ001-0009"], tmp_path_factory.mktemp("asr") / "short.wav", gap=0.3)


@pytest.fixture(scope="session")
def chromium_available() -> None:
    """Skips, with the reason, where headless Chromium and its driver cannot run."""
    from support import browser

    reason = browser.unavailable()
    if reason:
        pytest.skip(f"no headless browser: {reason}")
