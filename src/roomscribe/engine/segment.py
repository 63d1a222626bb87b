"""The caption segment: its id, its committed words, and the FINAL events that grow and close it.

A segment knows nothing of audio or utterances: the stream hands it the words it commits.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass

from .events import Event, EventType, Word
from .text import ends_sentence, join_words


def new_segment_id() -> str:
    return "SG_" + uuid.uuid4().hex[:12]


def capitalised(words: list[Word]) -> list[Word]:
    """A caption starts with a capital (a no-op for Hangul)."""
    first = words[0]
    text = first.text.lstrip()
    return [Word(text[:1].upper() + text[1:], first.start, first.end, first.probability, first.speaker), *words[1:]]


def revised_final(segment_id: str, words: list[Word], language, emitted_at, was: list[Word] | None = None) -> Event:
    """The FINAL that replaces a closed segment's text with what a second hearing found. With
    no `words` it retracts the segment (`was`: its first words, for its place and speaker):
    an empty final text, which frontends show as nothing and stores drop."""
    words = capitalised(words) if words else []
    text = join_words(words, language)
    place = words or was or []
    return Event(
        EventType.FINAL,
        segment_id,
        emitted_at,
        text=text,
        words=words,
        start=place[0].start if place else 0.0,
        end=place[-1].end if place else 0.0,
        language=language,
        segment_final=True,
        segment_text=text,
        revision=True,
        speaker=place[0].speaker if place else None,
    )


@dataclass
class ClosedSegment:
    """A caption segment that has closed, waiting to be heard again with its sentence."""

    id: str
    words: list[Word]
    language: str | None
    sentence_end: bool  # closed by its last word ending a sentence (not by a pause alone)


class Segment:
    """The open caption segment; closing it opens the next one under a new id."""

    def __init__(self) -> None:
        self._id = new_segment_id()
        self._words: list[Word] = []
        self.shown = False  # an interim of it went out: closing it must clear that, words or not
        # Segments closed lately, for a second hearing of their sentences.
        self.closed: deque[ClosedSegment] = deque(maxlen=32)

    @property
    def id(self) -> str:
        return self._id

    @property
    def start(self) -> float | None:
        """When its first word began (stream seconds); None while it has none."""
        return self._words[0].start if self._words else None

    def text_with(self, words: list[Word], language) -> str:
        """The segment's text followed by `words` not yet committed (an interim's view)."""
        return join_words(self._words + words, language)

    def commit(self, words: list[Word], language, emitted_at, close: bool) -> list[Event]:
        """FINALs for newly committed words. A sentence end closes the segment, so a long
        utterance is captioned as sentences; so does a change of speaker, so a caption has one;
        `close` also closes it after the last word."""
        events: list[Event] = []
        chunk: list[Word] = []
        for i, word in enumerate(words):
            said_by = (chunk or self._words or [word])[-1].speaker
            if word.speaker != said_by and (chunk or self._words):
                events.append(self._final(chunk, language, emitted_at, closes=True))
                chunk = []
            chunk.append(word)
            nxt = words[i + 1].text if i + 1 < len(words) else None
            if ends_sentence(word.text, language, nxt):
                events.append(self._final(chunk, language, emitted_at, closes=True, sentence_end=True))
                chunk = []
        # A close with no new words still tells listeners the open segment has ended.
        if chunk or (close and (self._words or self.shown)):
            events.append(self._final(chunk, language, emitted_at, closes=close))
        return events

    def _final(self, words: list[Word], language, emitted_at, closes: bool, sentence_end: bool = False) -> Event:
        if not self._words and words:
            words = capitalised(words)
        self._words.extend(words)
        seg = self._words
        event = Event(
            EventType.FINAL,
            self._id,
            emitted_at,
            text=join_words(words, language),
            words=list(words),
            start=(words or seg)[0].start if (words or seg) else 0.0,
            end=(words or seg)[-1].end if (words or seg) else 0.0,
            language=language,
            segment_final=closes,
            segment_text=join_words(seg, language),
            speaker=seg[0].speaker if seg else None,
        )
        if closes:
            if seg:
                self.closed.append(ClosedSegment(self._id, list(seg), language, sentence_end))
            self._id = new_segment_id()
            self._words = []
            self.shown = False
        return event
