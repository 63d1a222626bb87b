"""Online clustering of speaker embeddings and the hints that bound it (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from roomscribe.engine.clusters import MAX_SPEAKERS, OnlineClusters, SpeakerHints
from roomscribe.session.options import OptionsError, parse_speaker_hints


def unit(*values: float) -> np.ndarray:
    v = np.zeros(8, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def near(base: np.ndarray, seed: int, spread: float = 0.2) -> np.ndarray:
    """`base` with noise: cosine similarity to it of about 0.8 to 0.9."""
    noise = np.random.default_rng(seed).normal(size=base.shape).astype(np.float32)
    v = base + spread * noise / np.linalg.norm(noise) * np.sqrt(len(base)) / 2
    return v / np.linalg.norm(v)


A, B, C = unit(1, 0, 0), unit(0, 1, 0), unit(0, 0, 1)


def test_windows_of_one_voice_get_one_label_and_a_new_voice_the_next():
    clusters = OnlineClusters()
    labels = [clusters.assign(near(A, i)) for i in range(5)] + [clusters.assign(near(B, 10 + i)) for i in range(5)]
    assert labels == [0] * 5 + [1] * 5
    assert clusters.assign(near(A, 99)) == 0  # the first voice back: its label again


def test_the_speaker_cap_holds_and_extra_voices_join_the_nearest():
    clusters = OnlineClusters(SpeakerHints(max_speakers=2))
    for v in (A, B, C, unit(0, 0, 0, 1)):
        clusters.assign(v)
    assert len(clusters.speakers) == 2


def test_speakers_are_never_merged_below_the_count_given():
    def converge(clusters: OnlineClusters) -> int:
        clusters.assign(unit(1, 0.45))
        clusters.assign(unit(1, -0.45))
        for _ in range(3):
            clusters.assign(unit(1, 0))
        return len(clusters.speakers)

    assert converge(OnlineClusters(join=0.9, merge=0.8)) == 1
    assert converge(OnlineClusters(SpeakerHints(num_speakers=2), join=0.9, merge=0.8)) == 2
    assert converge(OnlineClusters(SpeakerHints(min_speakers=2), join=0.9, merge=0.8)) == 2


def test_speakers_whose_centroids_converge_merge_into_the_older_label():
    clusters = OnlineClusters(join=0.9, merge=0.8)
    a = clusters.assign(unit(1, 0.45))
    b = clusters.assign(unit(1, -0.45))
    assert (a, b) == (0, 1)
    for _ in range(3):
        clusters.assign(unit(1, 0))  # the voice in between: the two were one all along
    assert clusters.speakers == [0]
    assert clusters.resolve(1) == 0


def test_a_window_too_short_to_be_sure_of_never_opens_a_speaker():
    clusters = OnlineClusters()
    clusters.assign(A)
    assert clusters.assign(B, can_open=False) == 0
    assert clusters.speakers == [0]
    assert OnlineClusters().assign(B, can_open=False) == 0  # the first speaker still opens


def test_a_label_a_lone_short_window_opened_goes_to_the_first_sure_voice_unlike_it():
    clusters = OnlineClusters()
    assert clusters.assign(C, can_open=False) == 0  # a first "Yes." of no one in particular
    assert clusters.assign(A) == 0  # the first voice heard for sure takes its label (S1)
    assert clusters.assign(B) == 1
    assert clusters.speakers == [0, 1]
    # Once a sure window has joined it, a short window's speaker is a speaker like any other.
    sure = OnlineClusters()
    sure.assign(near(C, 1), can_open=False)
    sure.assign(near(C, 2))
    assert sure.assign(A) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"diarize": "maybe"}, "diarize must be true or false"),
        ({"num_speakers": "two"}, "num_speakers must be a whole number"),
        ({"num_speakers": "0"}, "num_speakers must be a whole number of at least 1"),
        ({"max_speakers": str(MAX_SPEAKERS + 1)}, f"at most {MAX_SPEAKERS}"),
        ({"min_speakers": "3", "max_speakers": "2"}, "min_speakers (3) is more than max_speakers (2)"),
        ({"num_speakers": "2", "max_speakers": "3"}, "not both"),
        ({"diarize": True, "num_speakers": True}, "num_speakers must be a whole number"),
    ],
)
def test_bad_speaker_hints_are_refused_with_the_reason(fields, message):
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_speaker_hints(fields)


def test_hints_ask_for_diarization_and_absent_ones_do_not():
    assert parse_speaker_hints({}) is None
    assert parse_speaker_hints({"diarize": "false"}) is None
    assert parse_speaker_hints({"diarize": "true"}) == SpeakerHints()
    assert parse_speaker_hints({"num_speakers": "2"}) == SpeakerHints(num_speakers=2)
    assert parse_speaker_hints({"diarize": "1", "min_speakers": 2, "max_speakers": "4"}) == SpeakerHints(
        min_speakers=2, max_speakers=4
    )
