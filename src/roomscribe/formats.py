"""Transcript output formats: text, json, srt, vtt."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, Sequence

FORMATS = ("text", "json", "srt", "vtt")


@dataclass
class Cue:
    start: float
    end: float
    text: str


def _clock(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(cues: Iterable[Cue]) -> str:
    blocks = [f"{i}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n{c.text}\n"
              for i, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def to_vtt(cues: Iterable[Cue]) -> str:
    blocks = [f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n{c.text}\n" for c in cues]
    return "WEBVTT\n\n" + "\n".join(blocks)


def to_text(cues: Sequence[Cue]) -> str:
    return "\n".join(c.text for c in cues) + ("\n" if cues else "")


def render(cues: Sequence[Cue], fmt: str, document: dict | None = None) -> str:
    if fmt == "srt":
        return to_srt(cues)
    if fmt == "vtt":
        return to_vtt(cues)
    if fmt == "json":
        doc = document if document is not None else {
            "segments": [{"start": c.start, "end": c.end, "text": c.text} for c in cues]}
        return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    return to_text(cues)
