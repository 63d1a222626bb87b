"""Long-form streaming: the 5.4-minute chapter, 1x with compute counted (slow)."""

from __future__ import annotations

import json

import pytest

from roomscribe.engine import EventType, StreamConfig
from roomscribe.engine.simulation import simulate
from support.speech import read_audio

LONGFORM = "longform/en_longform_lj003_5min.flac"


@pytest.mark.slow
def test_every_sentence_of_a_long_recording_gets_a_final_caption_in_order(engine, eval_dir, manifest):
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    entry = manifest[LONGFORM]
    turns = json.loads((eval_dir / entry["turns"]).read_text())
    result = simulate(engine, read_audio(eval_dir / LONGFORM), StreamConfig(policy="localagreement"), mode="aware")
    finals = result.finals()
    words = [w for e in finals for w in e.words]
    # Finals are never revised: their words come in time order and nothing is emitted twice.
    assert all(a.start <= b.start + 0.05 for a, b in zip(words, words[1:]))
    covered = sum(any(t["start"] - 0.3 <= (w.start + w.end) / 2 <= t["end"] + 0.3 for w in words) for t in turns)
    assert covered == len(turns)
    norm = EnglishTextNormalizer()
    error = jiwer.wer(norm(entry["reference_text"]), norm(" ".join(e.text for e in finals)))
    assert error < 0.2
    # The window stayed bounded and the stream kept up: every sentence final came out soon after it.
    assert result.rtf < 1.0
    segments = [e for e in result.events if e.type is EventType.FINAL and e.segment_final]
    assert len(segments) >= len(turns) // 2


def test_a_files_whole_file_step_runs_outside_the_model_lock_and_each_window_inside(engine, espeak_wav):
    """Live streams wait on the model lock: a long upload must only take it window by window,
    never for its VAD and feature pass over the whole file."""
    import threading

    from roomscribe.audio import load_audio

    lock = threading.Lock()
    held_at_start = []
    fw = engine.runner.fw_model
    real = fw.transcribe

    def watched(*args, **kwargs):
        held_at_start.append(lock.locked())
        return real(*args, **kwargs)

    class CountingLock:
        entered = 0

        def __enter__(self):
            CountingLock.entered += 1
            lock.acquire()

        def __exit__(self, *exc):
            lock.release()

    fw.transcribe = watched
    try:
        result = engine.transcribe(load_audio(espeak_wav), language="en", lock=CountingLock())
    finally:
        del fw.transcribe
    assert held_at_start == [False]
    assert CountingLock.entered == len(result.segments) + 1  # one per window step, and the last look
    assert "quick brown fox" in result.text.lower()
