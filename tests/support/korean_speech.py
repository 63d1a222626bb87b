"""Korean speech synthesised with espeak-ng, for tests of translation from speech.

There is no recorded Korean speech in the eval set. Whisper base hears espeak's Korean voice
only roughly, so tests check what language comes out (English letters, Hangul), never the
words."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from roomscribe.audio import SAMPLE_RATE, load_audio

MEETING = ("안녕하세요.", "오늘 회의를 시작하겠습니다.", "먼저 지난주 일정을 확인하겠습니다.")
GAP_SECONDS = 1.0  # silence before, between and after the sentences


def hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def english_letters(text: str) -> bool:
    """Text written in Latin letters (an English translation), with words and no Hangul."""
    letters = [ch for ch in text if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isascii() for ch in letters)


def espeak(text: str, voice: str, path: Path, speed: int = 130) -> np.ndarray:
    """`text` said by espeak-ng's `voice`, as 16 kHz mono float32."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
    return load_audio(path)  # espeak speaks at 22 kHz


@dataclass
class Spoken:
    audio: np.ndarray
    sentences: list[tuple[float, float, str]]  # (start, end, text) of each sentence, in seconds


def korean_meeting(directory: Path, sentences: tuple[str, ...] = MEETING) -> Spoken:
    """Korean sentences one after another, a second of silence around each, with where each is."""
    silence = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)
    pieces, spans, at = [silence], [], GAP_SECONDS
    for i, sentence in enumerate(sentences):
        said = espeak(sentence, "ko", directory / f"ko{i}.wav")
        spans.append((at, at + len(said) / SAMPLE_RATE, sentence))
        pieces += [said, silence]
        at += (len(said) + len(silence)) / SAMPLE_RATE
    return Spoken(np.concatenate(pieces), spans)
