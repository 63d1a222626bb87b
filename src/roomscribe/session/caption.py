"""The one caption type, and how the engine's events become captions.

The engine speaks in events (an interim tail, newly committed words, the end of a segment);
everything after it (stages, sinks, formats) speaks in `Caption`s: the whole state of one
segment of one participant's speech, as a caption shows it now. A newer caption of the same
`segment_id` replaces the older one; a `final` one changes only by a `revised` final, the
segment's sentence as a second, whole hearing found it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine import Event, EventType, Word
from ..engine.text import append_words, join_words


@dataclass
class Caption:
    participant: str  # who spoke: a LiveKit identity, a page participant's name, an /asr client
    segment_id: str  # stable per segment: its updates and its final share it
    text: str  # committed text of the segment
    tail: str = ""  # uncommitted (interim) text after it; may still change
    final: bool = False  # the segment is closed
    start: float = 0.0  # seconds on the speaker's clock
    end: float = 0.0
    language: str | None = None
    lag: float = 0.0  # seconds this update trails the speaker's audio (from the engine's event)
    emitted_at: float = 0.0  # audio the speaker had given when it came out, on the speaker's clock
    words: list[Word] = field(default_factory=list)  # committed words of the segment
    new_words: list[Word] = field(default_factory=list)  # the words this update committed
    tail_words: list[Word] = field(default_factory=list)
    track: str = ""  # the audio track it was heard on, where the door has one (a LiveKit track sid)
    speaker: str | None = None  # a voice within the track, for tracks that carry several
    translations: dict[str, str] = field(default_factory=dict)  # language -> translated text
    # The languages this update adds translations in: the segment's final again, its own text
    # unchanged (sinks that show one language send only those; transcripts keep the whole).
    translated: tuple[str, ...] = ()
    revised: bool = False  # a final that replaces the earlier final of its segment

    @property
    def shown(self) -> str:
        """What a caption displays: the committed text and the tail after it."""
        if not self.tail:
            return self.text
        if self.words or self.tail_words:
            return join_words([*self.words, *self.tail_words], self.language)
        return join_words([self.text, " ", self.tail], self.language)

    @property
    def commits(self) -> bool:
        """Whether this update committed words or closed the segment (not only a new tail)."""
        return bool(self.new_words) or self.final

    def as_dict(self) -> dict:
        out = {
            "segment_id": self.segment_id,
            "speaker": self.participant,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "language": self.language,
            "words": [
                {
                    "word": w.text.strip(),
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "probability": round(w.probability, 3),
                }
                for w in self.words
            ],
        }
        if self.speaker is not None:
            out["voice"] = self.speaker
        if self.translations:
            out["translations"] = dict(self.translations)
        return out


class CaptionBuilder:
    """Turns one engine stream's events into captions on the speaker's clock (`offset` is
    where the engine stream's audio begins on it). Pure state: the live speaker and the
    file simulation both use it."""

    def __init__(self, participant: str, offset: float = 0.0, track: str = ""):
        self.participant = participant
        self.offset = offset
        self.track = track
        self._segment_id: str | None = None
        self._words: list[Word] = []
        self._start: float | None = None
        self._end = 0.0

    def caption(self, event: Event) -> Caption | None:
        """The caption an event updates (None for speech start/end)."""
        if event.type not in (EventType.INTERIM, EventType.FINAL):
            return None
        if event.revision:
            return self._revised(event)
        if event.segment_id != self._segment_id:
            self._segment_id, self._words, self._start, self._end = event.segment_id, [], None, 0.0
        shift = self.offset
        start, end = event.start + shift, event.end + shift
        if event.type is EventType.FINAL:
            new = [w.shifted(shift) for w in event.words]
            append_words(self._words, new)
            tail: list[Word] = []
        else:
            new, tail = [], [w.shifted(shift) for w in event.words]
        if event.text or event.words:
            self._start = start if self._start is None else min(self._start, start)
            self._end = max(self._end, end)
        if self._words:
            self._start = min(self._start if self._start is not None else self._words[0].start, self._words[0].start)
        language = event.language
        caption = Caption(
            participant=self.participant,
            segment_id=event.segment_id,
            text=join_words(self._words, language),
            tail=join_words(tail, language) if tail else "",
            final=event.segment_final,
            start=self._start if self._start is not None else start,
            end=max(self._end, end),
            language=language,
            lag=event.lag,
            emitted_at=event.emitted_at + shift,
            words=list(self._words),
            new_words=new,
            tail_words=tail,
            track=self.track,
            speaker=event.speaker,
        )
        if event.segment_final:
            self._segment_id, self._words, self._start, self._end = None, [], None, 0.0
        return caption

    def _revised(self, event: Event) -> Caption:
        """A closed segment's new text; the segment open now is left as it is."""
        words = [w.shifted(self.offset) for w in event.words]
        return Caption(
            participant=self.participant,
            segment_id=event.segment_id,
            text=join_words(words, event.language),
            final=True,
            start=words[0].start if words else event.start + self.offset,
            end=words[-1].end if words else event.end + self.offset,
            language=event.language,
            lag=event.lag,
            emitted_at=event.emitted_at + self.offset,
            words=words,
            new_words=words,
            track=self.track,
            speaker=event.speaker,
            revised=True,
        )
