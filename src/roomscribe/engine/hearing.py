"""Second hearings: finished sentences decoded once more, whole, from a stream's recent audio.

The VAD cuts a sentence where a speaker breathes, and each piece heard alone lacks the words
around it. Closed caption segments wait here until they make a stretch of finished sentences;
the stretch is then heard again whole, pauses included, with the text before it as prompt, as
a 30 s window with its context hears it offline. The audio of the last words before it comes
first, with those words forced as the start of the hearing's text, so the stretch's first words
are heard as they are in the middle of an offline window (a prompt of text alone does not do
that). Where that hearing differs, its words replace a segment's (a revised FINAL for the same
segment id).
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from .audio_window import AudioWindow
from .events import Event, Word
from .quality import UNHEARD_MARGIN_SECONDS, UNHEARD_SPEECH_SECONDS
from .segment import ClosedSegment, revised_final
from .text import CJK_LANGUAGES, join_words, normalize_word
from .utterance import Revision
from .vad import VadStream
from .whisper import MAX_CONTEXT_TOKENS, SAMPLE_RATE

# A stretch is heard again when it fits this much speech.
SENTENCE_SECONDS = 24.0
# Sentences are heard again in stretches of at least this much speech: Whisper hears a
# sentence better with the ones around it, and Whisper's own full stops are not always right.
HEARING_SECONDS = 8.0
# A pause this long ends a stretch whose text did not end (the speaker trailed off).
SENTENCE_PAUSE_SECONDS = 2.0
# Where a stretch's audio is cut: the quietest point this close to its first and last word.
SENTENCE_EDGE_SECONDS = 0.3
# Speech heard before a stretch, from its first word to its last (its words are the forced start
# of the text): Whisper base hears a sentence's first words as offline does with this much before.
LEAD_SECONDS = 6.0
# A pause longer than this between the lead-in and the stretch is shortened to it.
LEAD_GAP_SECONDS = 1.0
# The most audio one hearing takes, lead-in included (the encoder takes 30 s with padding).
HEARING_WINDOW_SECONDS = 28.0
# A lead-in ends before a copy of this many of the words its stretch opens with.
REPEAT_WORDS = 3
# A segment that opens with a copy of this many words of its stretch (or all of its own,
# REPEAT_WORDS at least) begins the next stretch.
COPY_WORDS = 5
# Around a word heard in a stretch's trailing silence, how much must hold no speech (the
# VAD's probabilities lag the sound by a chunk or two).
UNSPOKEN_MARGIN_SECONDS = 0.15
# How far apart two hearings may start a word and still be said to hear it in the same place.
SAME_START_SECONDS = 0.1
# How far a word may miss another's span and still be said to hold it.
WORD_COVER_SLACK = 0.05
# How far before its end a word is surely being said.
WORD_TAIL_SECONDS = 0.25
# Recent audio kept, pauses included: the longest stretch and a pause on either side, and
# the lead-in before it.
RECENT_SECONDS = SENTENCE_SECONDS + 2 * SENTENCE_PAUSE_SECONDS + LEAD_SECONDS


class SecondHearings:
    """One stream's recent audio, the stretches of finished sentences queued to be heard
    again, and the text before them."""

    def __init__(self, encode_text, vad: VadStream | None):
        self._encode_text = encode_text
        self._vad = vad
        self._recent = AudioWindow(int(RECENT_SECONDS * SAMPLE_RATE))
        self._heard_until = 0  # stream sample where the last stretch queued ends
        # The words of the segments queued so far, with their language: lead-in and prompt.
        self._heard: deque[tuple[list[Word], str | None]] = deque(maxlen=12)
        self.queue: deque[Revision] = deque()

    def remember(self, samples: np.ndarray) -> None:
        self._recent.append(samples)
        keep = int(RECENT_SECONDS * SAMPLE_RATE)
        if len(self._recent) > keep:
            self._recent.drop_front(len(self._recent) - keep)

    def gather(
        self,
        closed: deque[ClosedSegment],
        *,
        speaking: bool,
        ended: bool,
        now: float,
        received: int,
        language,
        next_start: float | None = None,
    ) -> None:
        """Queue each finished stretch of `closed` segments (taken from it). `speaking`: an
        utterance is open or still being decoded; `now`: the stream clock (seconds);
        `received`: stream samples received (the queue time); `next_start`: when the first
        word committed after `closed` began (stream seconds), if there is one."""
        while closed:
            stretch: list[ClosedSegment] = []
            finished = False
            for seg in closed:
                if stretch and (
                    seg.words[0].start - stretch[-1].words[-1].end > SENTENCE_PAUSE_SECONDS
                    or seg.words[-1].end - stretch[0].words[0].start > SENTENCE_SECONDS
                    or _said_again(stretch, seg)
                ):
                    finished = True
                    break
                stretch.append(seg)
                if seg.sentence_end and seg.words[-1].end - stretch[0].words[0].start >= HEARING_SECONDS:
                    finished = True
                    break
            if not finished:
                # The stretch goes on, unless the speaker has stopped for a pause's length.
                silent = now - stretch[-1].words[-1].end
                if speaking or not (ended or silent > SENTENCE_PAUSE_SECONDS):
                    return
            for _ in stretch:
                closed.popleft()
            last_words = ended and not closed
            following = closed[0].words[0].start if closed else next_start
            self._queue(stretch, last_words, received, language, following)

    def _queue(
        self, stretch: list[ClosedSegment], last_words: bool, received: int, language, next_start: float | None
    ) -> None:
        first, last = stretch[0].words[0], stretch[-1].words[-1]
        edge = int(SENTENCE_EDGE_SECONDS * SAMPLE_RATE)
        first_sample, last_sample = int(first.start * SAMPLE_RATE), int(last.end * SAMPLE_RATE)
        start = self._quiet_before(first_sample, self._heard_until)
        if last_words:
            end = self._recent.end_sample  # the stream's last words: all the audio after them
        else:
            # Word ends come early from the alignment: look further after the last one, but not
            # into the next words (a sentence said again at once: a stretch that ends on the
            # first sound of its next copy is heard with its own last words garbled).
            lo, hi = last_sample, min(last_sample + 2 * edge, self._recent.end_sample)
            if next_start is not None and int(next_start * SAMPLE_RATE) < hi:
                hi = int(next_start * SAMPLE_RATE)
                lo = min(last_sample, hi) - edge
            end = self._quiet_point(lo, hi, min(last_sample, hi))
        opening = [w for seg in stretch for w in seg.words][:REPEAT_WORDS]
        lead, earlier, repeated_from = self._lead_in(first, end - start, stretch[0].language, opening)
        self._heard.extend((seg.words, seg.language) for seg in stretch)
        self._heard_until = max(self._heard_until, end)
        if start < self._recent.start_sample or end <= start:
            return  # its audio is gone (a stretch too long to hear again)
        lead_audio = self._lead_audio(lead, start, repeated_from)
        audio = np.concatenate([lead_audio, self._audio(start, end)])
        prompt = self._encode_text(" " + earlier) if earlier else []
        prefix = self._encode_text(" " + _text(lead)) if lead else []
        self.queue.append(
            Revision(
                audio,
                start,
                prompt[-MAX_CONTEXT_TOKENS:],
                language,
                stretch,
                queued_at=received,
                prefix=prefix,
                lead_samples=len(lead_audio),
            )
        )

    def _lead_in(
        self, first: Word, stretch_samples: int, language, opening: list[Word]
    ) -> tuple[list, str, int | None]:
        """The words heard last before a stretch that fit its lead-in (in its language, their
        audio still kept), by segment; the text before them (the prompt); and where the words
        the stretch opens with were said in the lead-in, if they were (stream sample): the
        lead-in ends before them, as Whisper does not decode a copy of its own text."""
        earlier = list(self._heard)
        if not earlier:
            return [], "", None
        last = earlier[-1][0][-1]
        gap = min(first.start - last.end, LEAD_GAP_SECONDS)
        # The lead-in's words span at most LEAD_SECONDS; with the pause after them they fit the window.
        budget = min(LEAD_SECONDS, HEARING_WINDOW_SECONDS - stretch_samples / SAMPLE_RATE - gap)
        floor = self._recent.start_sample / SAMPLE_RATE + SENTENCE_EDGE_SECONDS
        lead, earlier = _words_since(earlier, max(floor, last.end - budget), language)
        said = [w for words, _ in lead for w in words]
        at = _last_copy(said, opening)
        if at is None:
            return lead, _text(earlier), None
        # The lead-in is the speech before that copy, as much of it as fits.
        seen = 0
        for words, lang in lead:
            if seen < at:
                earlier.append((words[: at - seen], lang))
            seen += len(words)
        earlier = [(words, lang) for words, lang in earlier if words]
        if not earlier:
            return [], "", int(said[at].start * SAMPLE_RATE)
        lead, earlier = _words_since(earlier, max(floor, earlier[-1][0][-1].end - budget), language)
        return lead, _text(earlier), int(said[at].start * SAMPLE_RATE)

    def _lead_audio(self, lead: list, start: int, until: int | None) -> np.ndarray:
        """The lead-in's audio, from a quiet point before its first word up to the stretch;
        a longer pause than LEAD_GAP_SECONDS before the stretch is cut out of its middle, and
        all of it from `until` (words the lead-in leaves out)."""
        if not lead:
            return np.zeros(0, np.float32)
        first, last = int(lead[0][0][0].start * SAMPLE_RATE), int(lead[-1][0][-1].end * SAMPLE_RATE)
        lead_start = self._quiet_before(first, self._recent.start_sample)
        half_gap = int(LEAD_GAP_SECONDS * SAMPLE_RATE) // 2
        if until is not None:
            return self._audio(lead_start, min(last + half_gap, until))
        if start - last <= 2 * half_gap:
            return self._audio(lead_start, start)
        return np.concatenate([self._audio(lead_start, last + half_gap), self._audio(start - half_gap, start)])

    def _audio(self, start: int, end: int) -> np.ndarray:
        offset = self._recent.start_sample
        return np.array(self._recent.view()[max(0, start - offset) : max(0, end - offset)], np.float32)

    def _quiet_before(self, word_start: int, floor: int) -> int:
        """Where audio that begins with a word is cut: the quietest point shortly before it."""
        edge = int(SENTENCE_EDGE_SECONDS * SAMPLE_RATE)
        return self._quiet_point(max(word_start - edge, floor), word_start, word_start)

    def _quiet_point(self, lo: int, hi: int, word_edge: int) -> int:
        return word_edge if self._vad is None else self._vad.quiet_point(lo, hi, word_edge)

    def revised_finals(self, revision: Revision, words: list[Word], language, emitted_at: float) -> list[Event]:
        """A revised FINAL for each segment of `revision` that its second hearing (`words`,
        on the stream clock) heard differently, and heard whole."""
        events: list[Event] = []
        segments = revision.segments
        words = self._without_unspoken_end(words, segments[-1].words[-1].end)
        owners = [_owner(w, segments) for w in words]
        for k, seg in enumerate(segments):
            old = seg.words
            # The segment's speaker stays: a change of voice already closed it.
            new = [dataclasses.replace(w, speaker=old[0].speaker) for w, o in zip(words, owners) if o == k]
            if not new and len(old) <= REPEAT_WORDS and _covered(old, words):
                # A few words the second hearing heard as part of a word beside them: the tail of
                # a word cut by a window, heard once more on its own ("types. | Pips.").
                events.append(revised_final(seg.id, [], language, emitted_at, was=old))
            elif heard_differently(old, new) and self._skipped_speech(old, new) < UNHEARD_SPEECH_SECONDS:
                events.append(revised_final(seg.id, new, language, emitted_at))
        return events

    def _without_unspoken_end(self, words: list[Word], said_until: float) -> list[Word]:
        """`words` without the last ones heard after the first hearing's last word (`said_until`)
        with no speech under them: Whisper goes on into a stretch's trailing silence with the
        first word of what it expects next ("... in the exhibition. Print")."""
        if self._vad is None:
            return words
        margin = UNSPOKEN_MARGIN_SECONDS
        kept = list(words)
        while kept and kept[-1].start >= said_until:
            lo, hi = int((kept[-1].start - margin) * SAMPLE_RATE), int((kept[-1].end + margin) * SAMPLE_RATE)
            if not self._vad.holds(lo, hi) or self._vad.speech_seconds(lo, hi) > 0:
                break
            kept.pop()
        return kept

    def _skipped_speech(self, old: list[Word], new: list[Word]) -> float:
        """Seconds of speech within the first hearing's words `old` that fall between the
        second hearing's words `new`: a second copy of a sentence it did not hear."""
        if self._vad is None or not new:
            return 0.0
        ends = [old[0].start - UNHEARD_MARGIN_SECONDS] + [w.end for w in new]
        starts = [w.start for w in new] + [old[-1].end]
        return sum(
            self._vad.speech_seconds(int((a + UNHEARD_MARGIN_SECONDS) * SAMPLE_RATE), int(b * SAMPLE_RATE))
            for a, b in zip(ends, starts)
        )


def _text(segments: list[tuple[list[Word], str | None]]) -> str:
    """Segments' words (each segment in its own language) as text."""
    text = ""
    for words, lang in segments:
        gap = "" if not text or lang in CJK_LANGUAGES else " "
        text += gap + join_words(words, lang)
    return text


def _words_since(
    segments: list[tuple[list[Word], str | None]], earliest: float, language
) -> tuple[list[tuple[list[Word], str | None]], list[tuple[list[Word], str | None]]]:
    """The last of `segments`' words that begin at `earliest` or later, in `language` (by
    segment), and the segments before them."""
    earlier = list(segments)
    lead: list[tuple[list[Word], str | None]] = []
    while earlier and earlier[-1][1] == language:
        words, lang = earlier.pop()
        fits = next((i for i, w in enumerate(words) if w.start >= earliest), len(words))
        if fits < len(words):
            lead.insert(0, (words[fits:], lang))
        if fits > 0:
            earlier.append((words[:fits], lang))
            break
    return lead, earlier


def _said_again(stretch: list[ClosedSegment], seg: ClosedSegment) -> bool:
    """Whether `seg` opens with a copy of words said in `stretch` (its first COPY_WORDS, or
    all of them, REPEAT_WORDS at least): a sentence said again. Heard in one window with its
    first copy, Whisper skips it; it is heard in a stretch of its own."""
    want = [normalize_word(w.text) for w in seg.words[:COPY_WORDS]]
    if len(want) < REPEAT_WORDS or not all(want):
        return False
    said = [normalize_word(w.text) for s in stretch for w in s.words]
    return any(said[i : i + len(want)] == want for i in range(len(said) - len(want) + 1))


def _last_copy(said: list[Word], opening: list[Word]) -> int | None:
    """Where the last copy of the words `opening` starts in `said` (two or more words, as
    scored: case and punctuation folded), or None."""
    want = [normalize_word(w.text) for w in opening]
    if len(want) < 2 or not all(want):
        return None
    words = [normalize_word(w.text) for w in said]
    for i in range(len(words) - len(want), -1, -1):
        if words[i : i + len(want)] == want:
            return i
    return None


def _owner(word: Word, segments: list[ClosedSegment]) -> int:
    """The index of the segment of `segments` a second hearing's `word` belongs to: the one
    where the first hearing had the same word at the same start, else the one whose span
    holds its heard point (the border between two segments lies halfway between them). A word
    that took in the tail of a word cut by a window, heard again on its own, ends late
    ("types." over "Pips."): its start still says where it was said."""
    said = normalize_word(word.text)
    for k, seg in enumerate(segments):
        if any(abs(w.start - word.start) <= SAME_START_SECONDS and normalize_word(w.text) == said for w in seg.words):
            return k
    point = heard_point(word)
    for k in range(len(segments) - 1):
        if point < (segments[k].words[-1].end + segments[k + 1].words[0].start) / 2:
            return k
    return len(segments) - 1


def _covered(old: list[Word], heard: list[Word]) -> bool:
    """Whether one of the `heard` words spans all of `old`'s time."""
    return any(w.start <= old[0].start + WORD_COVER_SLACK and w.end >= old[-1].end - WORD_COVER_SLACK for w in heard)


def heard_point(word: Word) -> float:
    """A time surely inside `word`: shortly before its end. The alignment gives a word after
    a pause a start inside the pause (its middle may lie before the word), its end is good."""
    return word.end - min(WORD_TAIL_SECONDS, (word.end - word.start) / 2)


def heard_differently(old: list[Word], new: list[Word]) -> bool:
    """Whether a second hearing's words for one segment differ from the first's, and are not
    a hearing that lost or invented a large part of them (split at a wrong border). Words the
    first hearing said twice in a row do not count: dropping them is what a second hearing is for.
    (A vote on the word probabilities of the two hearings kept the first hearing about as often
    where it was wrong as where it was right: the two come from different windows.)"""
    before = [normalize_word(w.text) for w in old]
    after = [normalize_word(w.text) for w in new]
    if not after or len(after) < 0.6 * len(without_repeats(before)) or len(after) > 1.6 * len(before) + 2:
        return False
    return before != after


def without_repeats(words: list[str]) -> list[str]:
    """`words` with each immediate repeat of a run of one to four words left out
    ("section five section five" -> "section five")."""
    kept: list[str] = []
    for word in words:
        kept.append(word)
        for n in range(1, 5):
            if len(kept) >= 2 * n and kept[-n:] == kept[-2 * n : -n]:
                del kept[-n:]
                break
    return kept
