"""Repeated speech and decoder loops on recorded speech: what a speaker says again stays, what
the decoder repeats without audio of its own goes."""

from __future__ import annotations

import numpy as np
import pytest

from roomscribe.engine import StreamConfig
from roomscribe.engine.quality import QualityGate
from roomscribe.engine.simulation import simulate
from roomscribe.engine.whisper import DecodeRequest
from support.repeated_speech import PARTS, build
from support.speech import LJ, normalize, read_audio, wer


def _gap(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


def test_a_sentence_said_twice_in_one_window_is_kept_twice(engine, eval_dir):
    clip = read_audio(eval_dir / LJ / "LJ002-0012.flac")  # "After that they fell as steadily,"
    audio = np.concatenate([clip, _gap(0.6), clip])
    result = engine.runner.decode([DecodeRequest(audio, language="en")])[0]
    kept = engine.runner.decode_tokens([result.tokens[k] for k in QualityGate().accept(result, engine.runner, [])])
    assert normalize(kept).count("after that they fell") == 2, kept


@pytest.fixture(scope="module")
def repeated(engine, eval_dir, manifest):
    """Anaphora, a sentence said twice, a phrase said again: the first parts of the built input."""
    return build(engine, eval_dir, manifest, parts=PARTS[:1] + PARTS[4:5] + PARTS[6:8])


@pytest.mark.parametrize("policy", ["localagreement", "alignatt"])
def test_streamed_repeats_are_all_captioned_once_each(engine, repeated, policy):
    result = simulate(engine, repeated.audio, StreamConfig(policy=policy, language="en"), mode="aware")
    said, heard = normalize(repeated.reference), normalize(result.text())
    offline = normalize(engine.transcribe(repeated.audio, language="en").text)
    for phrase in ("this is", "they discarded this", "after that they fell"):
        # Every time it was said (or as often as offline Whisper hears it), never more.
        assert min(said.count(phrase), offline.count(phrase)) <= heard.count(phrase) <= said.count(phrase), (
            phrase,
            heard,
        )
    assert wer(repeated.reference, result.text()) <= wer(repeated.reference, offline) + 0.1, heard
