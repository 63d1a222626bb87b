"""The sortformer backend's streaming glue, on real speech through a Sortformer with random
weights (real ones cannot be had here): chunks, the speaker cache carried between them, and
the mapping of predictions onto the track's words. What the model hears is not tested."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from roomscribe.engine import Engine, EngineConfig, StreamConfig
from roomscribe.engine.clusters import SpeakerHints
from roomscribe.engine.simulation import simulate
from roomscribe.engine.speakers import DiarizerChoice

pytestmark = pytest.mark.usefixtures("sortformer_extra")

SECONDS = 16000


@pytest.fixture(scope="module")
def diarizer(random_sortformer_file):
    from roomscribe.diarization.sortformer import SortformerDiarizer

    return SortformerDiarizer.load(str(random_sortformer_file))


@pytest.fixture(scope="module")
def speech(mixed_track):
    return mixed_track.audio[: 20 * SECONDS]


def nemo_streaming(diarizer, streaming, audio: np.ndarray) -> np.ndarray:
    """NeMo's own streaming inference over the whole recording at once: the reference."""
    import torch

    diarizer._configure(streaming)
    with torch.inference_mode():
        preds = diarizer.model(
            audio_signal=torch.from_numpy(audio)[None], audio_signal_length=torch.tensor([len(audio)])
        )
    return preds[0].numpy()


def stream_in_pieces(track, audio: np.ndarray, start: int = 0, seed: int = 0) -> None:
    """Audio handed over as a live track's is: pieces of any size, work after each."""
    rng = np.random.default_rng(seed)
    pos = 0
    while pos < len(audio):
        n = int(rng.integers(100, 9000))
        track.speech(start + pos, audio[pos : pos + n])
        track.advance()
        pos += n


def predictions(track) -> np.ndarray:
    return np.concatenate([c.probs for c in track._chunks])


@pytest.mark.parametrize("preset", ["LIVE", "FILE"])
def test_streamed_chunks_predict_what_nemo_predicts_over_the_whole_recording(diarizer, speech, preset):
    from roomscribe.diarization import sortformer

    streaming = getattr(sortformer, preset)
    track = diarizer.track(streaming=streaming)
    stream_in_pieces(track, speech)
    track.pause()
    track.advance()
    ours, reference = predictions(track), nemo_streaming(diarizer, streaming, speech)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_a_chunk_runs_only_once_its_right_context_has_arrived(diarizer, speech):
    from roomscribe.diarization.sortformer import HOP, LIVE, WINDOW

    track = diarizer.track()
    sub = diarizer.subsampling
    frames = (LIVE.chunk_len + LIVE.chunk_right_context) * sub
    needed = (frames - 1) * HOP + WINDOW // 2  # the last frame's window, whole
    track.speech(0, speech[: needed - 1])
    track.advance()
    assert not track.has_labels  # one sample short of the first chunk's right context
    track.speech(needed - 1, speech[needed - 1 : needed])
    track.advance()
    assert len(track._chunks) == 1 and len(track._chunks[0].probs) == LIVE.chunk_len


def test_the_speaker_cache_is_carried_between_chunks_and_stays_bounded(diarizer, speech):
    from roomscribe.diarization.sortformer import LIVE

    track = diarizer.track()
    stream_in_pieces(track, speech)
    state = track._state
    cached = int(state.spkcache_lengths[0])
    assert 0 < cached <= LIVE.spkcache_len  # 20 s overflowed the FIFO into the cache
    assert int(state.fifo_lengths[0]) <= LIVE.fifo_len
    # A track started afresh at the last chunk (no cache, no FIFO) predicts otherwise.
    fresh = diarizer.track()
    stream_in_pieces(fresh, speech[-3 * SECONDS :])
    assert not np.allclose(predictions(fresh)[-6:], predictions(track)[-6:], atol=1e-3)


def test_memory_stays_bounded_over_a_long_track(diarizer, speech):
    from roomscribe.diarization import sortformer

    track = diarizer.track()
    for k in range(5):  # 100 s of speech, in utterances with gaps on the track
        stream_in_pieces(track, speech, start=k * 25 * SECONDS, seed=k)
        track.pause()
    track.advance()
    context = (sortformer.FEATURE_CONTEXT_SECONDS + 1) * SECONDS
    assert len(track._audio) <= context + sortformer.LIVE.chunk_len * diarizer.subsampling * sortformer.HOP


def test_words_take_the_speaker_most_active_over_their_frames_on_the_track_clock(diarizer, speech):
    from roomscribe.diarization.sortformer import GAP_SECONDS, HOP

    track = diarizer.track()
    first, second = speech[: 6 * SECONDS], speech[6 * SECONDS : 12 * SECONDS]
    stream_in_pieces(track, first, start=3 * SECONDS)  # speech from 3 s on the track
    track.pause()
    stream_in_pieces(track, second, start=40 * SECONDS, seed=1)  # then a long silence
    track.pause()
    track.advance()
    probs, sub = predictions(track), diarizer.subsampling
    step = HOP * sub
    # The second utterance follows the first on the model's clock after a short gap,
    # starting on a prediction frame.
    resumed = -(-(len(first) + int(GAP_SECONDS * SECONDS)) // step)
    for t0, t1, frame in [(4.0, 4.3, (SECONDS // step)), (41.0, 41.3, resumed + SECONDS // step)]:
        rows = probs[frame : frame + -(-int(0.3 * SECONDS) // step) + 1]
        expected = int(np.argmax(rows.mean(axis=0)))
        assert track.label_at(t0, t1) == expected
    names = [track.speaker_at(t, t + 0.2) for t in np.arange(3.0, 9.0, 0.2)]
    assert names[0] == "S1" and all(n in ("S1", "S2", "S3", "S4") for n in names)


def test_a_speaker_count_over_four_is_refused_and_a_lower_cap_holds(diarizer, speech):
    with pytest.raises(ValueError, match="sortformer diarizer tells at most 4 voices apart, not 5"):
        diarizer.track(SpeakerHints(min_speakers=5))
    track = diarizer.track(SpeakerHints(max_speakers=1))
    stream_in_pieces(track, speech[: 8 * SECONDS])
    track.pause()
    track.advance()
    assert {track.speaker_at(t, t + 0.2) for t in np.arange(0, 7.5, 0.2)} == {"S1"}


def test_a_missing_model_file_names_what_to_give(tmp_path):
    from roomscribe.diarization.extras import DiarizationUnavailableError
    from roomscribe.diarization.sortformer import SortformerDiarizer

    with pytest.raises(DiarizationUnavailableError, match="no Sortformer model file at"):
        SortformerDiarizer.load(str(tmp_path / "absent.nemo"))


def test_the_engine_streams_and_files_through_the_sortformer_backend(engine, mixed_track, random_sortformer_file):
    choice = DiarizerChoice("sortformer", str(random_sortformer_file))
    sortformer_engine = Engine(EngineConfig(diarizer=choice), runner=engine.runner, vad=engine.vad)
    audio = mixed_track.audio
    result = simulate(sortformer_engine, audio, StreamConfig(language="en", diarize=True), mode="unaware")
    finals = [e for e in result.finals() if e.words]
    assert finals and all(w.speaker in ("S1", "S2", "S3", "S4") for e in finals for w in e.words)
    assert all({w.speaker for w in e.words} == {e.speaker} for e in finals)  # a voice change ends a caption
    transcript = sortformer_engine.transcribe(audio, language="en", speakers=SpeakerHints())
    assert transcript.turns and all(seg.speaker for seg in transcript.segments)


def test_the_cli_runs_the_backend_it_is_given(mixed_track, random_sortformer_file, tmp_path):
    wav = tmp_path / "two_voices.wav"
    sf.write(wav, mixed_track.audio, SECONDS)
    base = [sys.executable, "-m", "roomscribe.cli", "transcribe", str(wav), "--language", "en", "--diarize"]
    chosen = ["--diarizer", "sortformer", "--diarizer-model", str(random_sortformer_file), "--format", "json"]
    out = subprocess.run(base + chosen, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["has_diarization"] and doc["segments"] and all(s["speaker"] for s in doc["segments"])
    refused = subprocess.run(
        base + ["--diarizer", "sortformer", "--num-speakers", "6"], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "tells at most 4 voices apart, not 6" in refused.stderr
