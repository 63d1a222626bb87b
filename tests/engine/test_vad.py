"""Silero VAD: shared session, per-stream state, speech start/end events."""

from __future__ import annotations

import numpy as np
import pytest

from roomscribe.engine.vad import CHUNK, SileroVAD, VadConfig, VadStream
from support.speech import read_audio


@pytest.fixture(scope="module")
def vad():
    return SileroVAD()


def test_digital_silence_and_noise_never_start_speech(vad, eval_dir):
    for name in ("silence_digital_30s.flac", "white_noise_-40dBFS_30s.flac", "brown_noise_-30dBFS_30s.flac"):
        stream = VadStream(vad)
        events = stream.push(read_audio(eval_dir / "nonspeech" / name))
        assert events == [], name


def test_speech_gives_one_start_then_an_end_after_the_silence(vad, eval_dir):
    audio = read_audio(eval_dir / "asr/en/ljspeech/LJ001-0001.flac")
    padded = np.concatenate([np.zeros(16000, np.float32), audio, np.zeros(16000, np.float32)])
    stream = VadStream(vad, VadConfig(min_silence_seconds=0.5))
    events = stream.push(padded)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end"
    assert 0.6 <= events[0].sample / 16000 <= 1.2
    assert abs(events[-1].sample / 16000 - (1.0 + len(audio) / 16000)) < 0.8


def test_state_is_per_stream_and_chunking_does_not_change_results(vad, eval_dir):
    audio = read_audio(eval_dir / "asr/en/ljspeech/LJ001-0009.flac")[: CHUNK * 200]
    whole = vad.probabilities(vad.new_state(), audio.reshape(-1, CHUNK))
    pieces = []
    state = vad.new_state()
    other = vad.new_state()  # another stream interleaved on the same session
    for i in range(0, 200, 7):
        block = audio[i * CHUNK : min(200, i + 7) * CHUNK].reshape(-1, CHUNK)
        pieces.append(vad.probabilities(state, block))
        vad.probabilities(other, np.random.default_rng(i).normal(0, 0.1, block.shape).astype(np.float32))
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=1e-5)


def test_odd_sized_pushes_are_buffered_to_whole_chunks(vad):
    stream = VadStream(vad)
    for n in (100, 1000, 1, 411):
        stream.push(np.zeros(n, np.float32))
    assert stream.processed_samples == (1512 // CHUNK) * CHUNK
