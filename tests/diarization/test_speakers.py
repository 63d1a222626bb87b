"""Who said what on real speech: a track with two voices, streamed and as a file."""

from __future__ import annotations

import collections

import pytest

from roomscribe.engine import StreamConfig
from roomscribe.engine.clusters import SpeakerHints
from roomscribe.engine.simulation import simulate

pytestmark = pytest.mark.usefixtures("diarization_extra")


def mapping(pairs) -> dict[str, collections.Counter]:
    """For each reference voice, how often each label was given to it."""
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for truth, label in pairs:
        if truth is not None:
            seen[truth][label] += 1
    return seen


def agreement(seen: dict[str, collections.Counter]) -> float:
    """Share of words whose label is their voice's own (one label per voice, none shared)."""
    total = sum(sum(c.values()) for c in seen.values())
    own = {voice: c.most_common(1)[0][0] for voice, c in seen.items()}
    assert len(set(own.values())) == len(own), f"two voices share a label: {own}"
    return sum(seen[v][own[v]] for v in seen) / total


def test_a_mixed_track_is_captioned_with_the_speaker_changing_with_the_voice(engine, mixed_track):
    result = simulate(engine, mixed_track.audio, StreamConfig(language="en", diarize=True), mode="unaware")
    finals = [e for e in result.finals() if e.words]
    assert all(e.speaker is not None for e in finals)
    # One speaker per caption: a change of voice closes the segment.
    for e in finals:
        assert {w.speaker for w in e.words} == {e.speaker}
    words = [w for e in finals for w in e.words]
    seen = mapping((mixed_track.speaker_at((w.start + w.end) / 2), w.speaker) for w in words)
    assert set(seen) == {"Allison", "LJ"}
    assert agreement(seen) >= 0.9, seen
    # Labels are stable: each voice keeps its label when it comes back.
    own = {voice: c.most_common(1)[0][0] for voice, c in seen.items()}
    for turn in mixed_track.turns:
        said = [w.speaker for w in words if turn.start <= (w.start + w.end) / 2 <= turn.end]
        assert collections.Counter(said).most_common(1)[0][0] == own[turn.speaker]
    # The segments (as captions end up) split where the voice changes inside an utterance.
    changes = [s for s in result.segments() if s.words]
    assert len({s.segment_id for s in changes}) >= 4


def test_interims_carry_a_provisional_speaker(engine, mixed_track):
    result = simulate(engine, mixed_track.audio, StreamConfig(language="en", diarize=True), mode="unaware")
    interims = [e for e in result.events if e.type.value == "interim" and e.words]
    assert interims and sum(e.speaker is not None for e in interims) >= len(interims) - 2


def test_a_file_with_two_voices_has_a_speaker_on_every_segment_and_word(engine, mixed_track):
    transcript = engine.transcribe(mixed_track.audio, language="en", speakers=SpeakerHints())
    assert transcript.turns
    assert all(s.speaker is not None for s in transcript.segments)
    words = [w for s in transcript.segments for w in s.words]
    assert all(w["speaker"] == s.speaker for s in transcript.segments for w in s.words)
    seen = mapping((mixed_track.speaker_at((w["start"] + w["end"]) / 2), w["speaker"]) for w in words)
    assert set(seen) == {"Allison", "LJ"}
    assert agreement(seen) >= 0.9, seen
    assert {t.speaker for t in transcript.turns} == {"S1", "S2"}


def test_a_file_told_its_speaker_count_finds_that_many(engine, mixed_track):
    transcript = engine.transcribe(mixed_track.audio, language="en", speakers=SpeakerHints(num_speakers=3))
    assert len({s.speaker for s in transcript.segments} | {t.speaker for t in transcript.turns}) == 3


def test_an_undiarized_stream_has_no_speakers(engine, mixed_track):
    result = simulate(engine, mixed_track.audio[: 16000 * 6], StreamConfig(language="en"), mode="unaware")
    assert all(e.speaker is None for e in result.events)


def test_asking_for_speakers_without_the_extra_names_what_to_install(monkeypatch):
    import importlib.util

    from roomscribe.diarization import encoder

    real = importlib.util.find_spec
    monkeypatch.setattr(encoder.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    expected = r"needs torch: pip install 'roomscribe\[diarization\]'"
    with pytest.raises(encoder.DiarizationUnavailableError, match=expected):
        encoder.SpeakerEncoder()
