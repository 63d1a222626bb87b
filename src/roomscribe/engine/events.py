"""What the engine emits: words with timings and caption events."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


@dataclass
class Word:
    """A word on the stream's audio clock (seconds). `text` keeps its leading space."""

    text: str
    start: float
    end: float
    probability: float = 1.0
    speaker: str | None = None  # who said it, where the track is diarized ("S1", "S2", ...)

    def shifted(self, offset: float) -> Word:
        return Word(self.text, self.start + offset, self.end + offset, self.probability, self.speaker)


class EventType(str, Enum):
    SPEECH_START = "speech_start"
    INTERIM = "interim"
    FINAL = "final"
    SPEECH_END = "speech_end"


@dataclass
class Event:
    """One caption event.

    INTERIM carries the uncommitted tail of the current segment (it replaces the
    previous interim); FINAL carries words newly committed to the segment, and the
    last FINAL of a segment has `segment_final` set. `segment_text` is the whole
    segment so far, which is what a caption shows. A `revision` FINAL comes later still and
    replaces a closed segment's text.
    `emitted_at` is how much audio the stream had been given when it came out, so
    `lag` is how far the caption trails the audio.
    """

    type: EventType
    segment_id: str
    emitted_at: float
    text: str = ""
    words: list[Word] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    language: str | None = None
    segment_final: bool = False  # FINAL that closes its segment
    segment_text: str = ""  # the segment so far: committed words (+ the tail, for INTERIM)
    # A FINAL for a segment already closed: its whole text as a second, whole-sentence decode
    # heard it, replacing what was committed piece by piece (listeners key captions by segment).
    revision: bool = False
    # Who spoke, where the track is diarized: one speaker per caption (a change of voice
    # closes the segment). On an INTERIM it is provisional.
    speaker: str | None = None

    @property
    def lag(self) -> float:
        if self.type not in (EventType.INTERIM, EventType.FINAL):
            return 0.0
        return max(0.0, self.emitted_at - self.end)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["type"] = self.type.value
        out["lag"] = round(self.lag, 3)
        return out
