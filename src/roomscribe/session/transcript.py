"""A transcript: the sink that keeps every segment of a session, for downloads and status.

Captions of one or more speakers are kept by segment, in the order the segments started;
a newer caption of a segment replaces the older one. Memory is bounded over a very long
session by dropping the oldest segments past `max_segments`.
"""

from __future__ import annotations

from .caption import Caption
from .formats import render


class Transcript:
    def __init__(self, max_segments: int = 20000):
        self.segments: dict[str, Caption] = {}
        self.max_segments = max_segments

    def __call__(self, caption: Caption) -> None:
        if caption.segment_id not in self.segments:
            while len(self.segments) >= self.max_segments:
                self.segments.pop(next(iter(self.segments)))
        self.segments[caption.segment_id] = caption

    def committed(self) -> list[Caption]:
        """Segments with committed text, in the order they started."""
        return sorted((c for c in self.segments.values() if c.text), key=lambda c: c.start)

    def render(self, fmt: str, speakers: bool = True) -> str:
        """The committed transcript as txt, srt, vtt or json."""
        captions = self.committed()
        return render(
            captions, "text" if fmt == "txt" else fmt, {"segments": [c.as_dict() for c in captions]}, speakers=speakers
        )
