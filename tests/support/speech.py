"""Recorded speech for the tests, and how captions are scored against what was said."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
EVAL = Path(os.environ.get("ROOMSCRIBE_EVAL", ROOT.parent / "shared" / "eval"))
LJ = "asr/en/ljspeech"


def read_audio(path: Path) -> np.ndarray:
    audio, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    return audio


def normalize(text: str) -> str:
    """English text as scored: Whisper's English normaliser (lower case, no punctuation, numbers
    written the same way)."""
    from whisper_normalizer.english import EnglishTextNormalizer

    return " ".join(EnglishTextNormalizer()(text).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return jiwer.wer(normalize(reference), normalize(hypothesis) or "<nothing>")


def said_so_far_wer(reference: str, hypothesis: str) -> tuple[float, float]:
    """For speech cut off part-way: WER of the hypothesis against as many of the reference's
    first words as it has, and the share of the reference it covers."""
    import jiwer

    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    if not hyp:
        return 1.0, 0.0
    return jiwer.wer(" ".join(ref[: len(hyp)]), " ".join(hyp)), len(hyp) / len(ref)
