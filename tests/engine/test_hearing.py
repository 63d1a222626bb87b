"""Second hearings as a unit: which audio and text a stretch of finished sentences is heard
again with, and which segment each word of that hearing replaces."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from roomscribe.engine.events import Word
from roomscribe.engine.hearing import LEAD_GAP_SECONDS, LEAD_SECONDS, SecondHearings
from roomscribe.engine.segment import ClosedSegment
from roomscribe.engine.vad import SileroVAD, VadStream
from support.speech import read_audio

SR = 16000


def _encode(text: str) -> list[str]:
    return text.split()  # a word per token: enough to read back what was asked for


def _segment(name: str, text: str, start: float, step: float = 0.4, language: str = "en") -> ClosedSegment:
    words = [Word(" " + w, start + i * step, start + i * step + step * 0.8) for i, w in enumerate(text.split())]
    return ClosedSegment(name, words, language, sentence_end=text.endswith("."))


def _hearings(seconds: float) -> SecondHearings:
    hearings = SecondHearings(_encode, vad=None)
    # Each sample holds its own time, so the audio a hearing takes says where it came from.
    hearings.remember((np.arange(int(seconds * SR)) / SR).astype(np.float32))
    return hearings


def _gather(hearings: SecondHearings, *segments: ClosedSegment) -> None:
    end = max(s.words[-1].end for s in segments)
    hearings.gather(
        deque(segments), speaking=False, ended=False, now=end + 3, received=int((end + 3) * SR), language="en"
    )


def _two_stretches(stretch_at: float):
    """A sentence heard again alone, then one starting at `stretch_at`: both, and the second's hearing."""
    hearings = _hearings(30.0)
    earlier = _segment("A", "one two three four five six seven eight nine ten eleven twelve.", 1.0, step=0.7)
    _gather(hearings, earlier)
    hearings.queue.clear()
    stretch = _segment(
        "B", "after that they fell as steadily and then some more words came along.", stretch_at, step=0.7
    )
    _gather(hearings, stretch)
    return earlier, stretch, hearings.queue.popleft()


def test_a_stretch_is_heard_after_the_speech_before_it_with_those_words_forced_as_its_start():
    earlier, stretch, revision = _two_stretches(stretch_at=10.0)
    lead_words = [w for w in earlier.words if w.start >= earlier.words[-1].end - LEAD_SECONDS]
    assert revision.prefix == [w.text.strip() for w in lead_words]  # the last words, as text
    assert revision.prompt == [w.text.strip() for w in earlier.words if w not in lead_words]  # the rest
    # The window: the lead-in's audio, then the stretch's, with the stream clock kept for the stretch.
    lead = revision.audio[: revision.lead_samples]
    assert lead[0] == pytest.approx(lead_words[0].start, abs=0.01)
    assert revision.audio[revision.lead_samples] == pytest.approx(stretch.words[0].start, abs=0.01)
    assert revision.window_start + revision.lead_samples == revision.start_sample == int(stretch.words[0].start * SR)
    assert len(revision.audio) / SR <= 28.0


def test_a_long_pause_before_a_stretch_is_shortened_in_its_lead_in():
    earlier, _, revision = _two_stretches(stretch_at=20.0)
    assert revision.prefix  # a pause of ten seconds still leaves the words before it
    lead = revision.audio[: revision.lead_samples]
    jumps = np.flatnonzero(np.diff(lead) > 1.0 / SR * 1.5)
    assert len(jumps) == 1  # one cut, in the pause
    cut = jumps[0]
    kept_pause = (lead[cut] - earlier.words[-1].end) + (len(lead) - cut - 1) / SR
    assert kept_pause == pytest.approx(LEAD_GAP_SECONDS, abs=0.02)


def test_no_lead_in_from_speech_in_another_language_or_audio_no_longer_kept():
    hearings = _hearings(12.0)
    _gather(
        hearings, _segment("A", "하나 둘 셋 넷 다섯 여섯 일곱 여덟 아홉 열 열하나 열둘.", 0.5, step=0.7, language="ko")
    )
    hearings.queue.clear()
    _gather(hearings, _segment("B", "after that they fell as steadily and then some more.", 9.0, step=0.3))
    revision = hearings.queue.popleft()
    assert revision.prefix == [] and revision.lead_samples == 0
    assert revision.prompt  # still the text before it, as context

    hearings = _hearings(45.0)  # the recent audio no longer holds the words before the stretch
    _gather(hearings, _segment("A", "one two three four five six seven eight nine ten eleven twelve.", 1.0, step=0.7))
    hearings.queue.clear()
    _gather(hearings, _segment("B", "after that they fell as steadily and then some more words came.", 30.0, step=0.7))
    revision = hearings.queue.popleft()
    assert revision.prefix == [] and revision.lead_samples == 0


def test_a_word_whose_alignment_starts_in_a_pause_replaces_the_segment_after_the_pause():
    hearings = _hearings(20.0)
    side = ClosedSegment(
        "side", [Word(" The", 2.2, 2.8), Word(" female", 2.86, 3.7), Word(" side.", 3.7, 4.08)], "en", True
    )
    three = ClosedSegment("three", [Word(" 3", 4.6, 5.3)], "en", False)
    yard = ClosedSegment(
        "yard", [Word(" The", 5.32, 5.7), Word(" chapel", 5.7, 6.0), Word(" yard.", 6.0, 6.5)], "en", True
    )
    _gather(hearings, side, three, yard)
    revision = hearings.queue.popleft()
    # The hearing's "The" is aligned from the end of "Three" across the pause to its own sound.
    heard = [
        Word(" The", 2.2, 2.8),
        Word(" female", 2.86, 3.7),
        Word(" side.", 3.7, 4.08),
        Word(" Three.", 4.32, 4.66),
        Word(" The", 4.66, 5.70),
        Word(" chapel", 5.7, 6.0),
        Word(" yard.", 6.0, 6.5),
    ]
    revised = {e.segment_id: e.text for e in hearings.revised_finals(revision, heard, "en", 8.0)}
    assert revised == {"three": "Three."}


def test_a_lead_in_ends_before_a_copy_of_the_words_its_stretch_opens_with():
    # Whisper does not decode a copy of its own text: a lead-in that ends with the sentence the
    # stretch says again would leave the second copy unheard.
    hearings = _hearings(30.0)
    earlier = _segment("A", "to say a few words on the principles. after that they fell as steadily.", 1.0, step=0.5)
    _gather(hearings, earlier)
    hearings.queue.clear()
    copy_at = earlier.words[8].start  # "after"
    stretch = _segment("B", "after that they fell as steadily and then some more words came along.", 9.0, step=0.7)
    _gather(hearings, stretch)

    revision = hearings.queue.popleft()
    # The speech before the copy, as much as a lead-in takes.
    lead_words = [w for w in earlier.words[:8] if w.start >= earlier.words[7].end - LEAD_SECONDS]
    assert revision.prefix == [w.text.strip() for w in lead_words] and revision.prefix[-1] == "principles."
    assert revision.prefix[0] == "to"
    lead = revision.audio[: revision.lead_samples]
    assert lead.max() < copy_at  # none of the first copy's audio
    assert revision.audio[revision.lead_samples] == pytest.approx(stretch.words[0].start, abs=0.01)


def test_a_stretch_ends_before_the_words_that_follow_it_at_once():
    # The first hearing aligned the last word's end into the next copy of the sentence: the
    # hearing's audio must not take the first sound of that copy with it.
    hearings = _hearings(20.0)
    stretch = _segment("A", "after that they fell as steadily and then some more words came along.", 1.0, step=0.7)
    next_start = stretch.words[-1].end - 0.2
    hearings.gather(
        deque([stretch]), speaking=True, ended=False, now=12.0, received=12 * SR, language="en", next_start=next_start
    )
    revision = hearings.queue.popleft()
    assert revision.audio[-1] == pytest.approx(next_start, abs=2 / SR)


def test_a_sentence_said_again_is_heard_in_a_stretch_of_its_own_after_what_came_before_its_first_copy():
    hearings = _hearings(30.0)
    before = _segment("A", "to say a few words on the principles of design.", 1.0)
    first = _segment("B", "after that they fell as steadily.", 5.5)
    again = _segment("C", "after that they fell as steadily.", 8.2)
    after = _segment("D", "fourteen sixty nine fourteen seventy two the female debtors side.", 10.9)
    _gather(hearings, before, first, again, after)
    stretches = [[seg.id for seg in revision.segments] for revision in hearings.queue]
    assert stretches == [["A", "B"], ["C", "D"]]
    # Whisper does not hear a copy of its own text: the second copy's lead-in ends before the first.
    assert hearings.queue[1].prefix == "to say a few words on the principles of design.".split()


def test_a_few_words_that_a_neighbouring_word_of_the_second_hearing_spans_are_retracted():
    # The window cut "types" early; its tail was heard again on its own as "Pips." The second
    # hearing says "types." over both: the stray segment is retracted (an empty final), not kept.
    hearings = _hearings(30.0)
    means = ClosedSegment(
        "means", [Word(" by", 15.5, 15.8), Word(" movable", 16.3, 16.7), Word(" types.", 16.7, 17.13)], "en", True
    )
    stray = ClosedSegment("stray", [Word(" Pips.", 17.13, 17.77)], "en", True)
    now = ClosedSegment(
        "now", [Word(" Now", 18.1, 18.5), Word(" as", 18.5, 18.8), Word(" all.", 18.8, 19.2)], "en", True
    )
    _gather(hearings, means, stray, now)
    revision = hearings.queue.popleft()
    heard = [Word(" by", 15.5, 15.8), Word(" movable", 16.3, 16.7), Word(" types.", 16.7, 18.25)]
    heard += [Word(" Now", 18.1, 18.5), Word(" as", 18.5, 18.8), Word(" all.", 18.8, 19.2)]
    events = {e.segment_id: e for e in hearings.revised_finals(revision, heard, "en", 21.0)}
    # "types." stays with "movable", where the first hearing said it, though it ends in the pause
    # before "now": neither segment changes.
    assert {k: e.text for k, e in events.items()} == {"stray": ""}
    assert events["stray"].text == "" and events["stray"].words == [] and events["stray"].revision
    assert (events["stray"].start, events["stray"].end) == (17.13, 17.77)  # its place, for a store to find

    # A segment the hearing lost without hearing its audio as anything else is kept.
    hearings = _hearings(30.0)
    _gather(hearings, means, stray, now)
    revision = hearings.queue.popleft()
    lost = [w for w in heard if w.text != " types."] + [Word(" types.", 16.7, 17.1)]
    assert "stray" not in {e.segment_id for e in hearings.revised_finals(revision, lost, "en", 21.0)}


def test_a_word_heard_in_the_trailing_silence_after_a_stretch_is_left_out(eval_dir):
    # Whisper goes on into a stretch's trailing silence with the first word it expects next.
    audio = read_audio(eval_dir / "asr/en/ljspeech/LJ001-0001.flac")
    spoken = len(audio) / SR
    vad = VadStream(SileroVAD())
    vad.push(np.concatenate([audio, np.zeros(SR, np.float32)]))
    hearings = SecondHearings(_encode, vad=vad)
    hearings.remember(np.concatenate([audio, np.zeros(SR, np.float32)]))
    words = ["in", "an", "exhibition."]
    seg = ClosedSegment(
        "end", [Word(" " + w, spoken - 1.2 + 0.4 * i, spoken - 0.85 + 0.4 * i) for i, w in enumerate(words)], "en", True
    )
    _gather(hearings, seg)
    revision = hearings.queue.popleft()
    heard = [Word(" In", spoken - 1.2, spoken - 0.85), Word(" the", spoken - 0.8, spoken - 0.45)]
    heard += [Word(" exhibition.", spoken - 0.4, spoken + 0.1), Word(" Print", spoken + 0.45, spoken + 0.6)]
    (event,) = hearings.revised_finals(revision, heard, "en", spoken + 2)
    assert event.text == "In the exhibition."  # "Print", in silence, is gone; the last word that has sound stays
