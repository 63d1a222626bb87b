"""One speaker's live audio through the process's shared scheduler, on an asyncio loop.

Every live door (the WebRTC page, the `/asr` WebSocket) turns its audio into 16 kHz mono
float32 and hands it to a `LiveSpeaker`; events come back on the door's loop, and the
speaker keeps the transcript (`Transcript`) for downloads and status.
"""

from __future__ import annotations

import asyncio
import logging
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .engine import Event, EventType, StreamConfig
from .formats import Cue, render
from .scheduler import Drained, EngineWorker, Failure, StreamHandle, loop_delivery

logger = logging.getLogger("roomscribe.live")

SAMPLE_RATE = 16000
FINISH_TIMEOUT = 30.0  # the most a leaving speaker waits for its last final
MAX_RESTARTS = 5  # a stream that keeps failing is given up on


@dataclass
class Line:
    """One caption segment on the session's clock (seconds since the session began)."""

    segment_id: str
    speaker: str
    start: float
    end: float
    text: str = ""  # committed text
    tail: str = ""  # uncommitted text (interim)
    language: str | None = None
    closed: bool = False
    words: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"segment_id": self.segment_id, "speaker": self.speaker, "start": round(self.start, 3),
                "end": round(self.end, 3), "text": self.text, "language": self.language, "words": self.words}


class Transcript:
    """Caption lines from one or more speakers, kept in the order they started."""

    def __init__(self, max_lines: int = 20000):
        self.lines: dict[str, Line] = {}
        self.max_lines = max_lines  # bounds memory over a very long session

    def apply(self, speaker: str, event: Event, offset: float) -> Line | None:
        if event.type not in (EventType.INTERIM, EventType.FINAL):
            return None
        line = self.lines.get(event.segment_id)
        if line is None:
            line = self.lines[event.segment_id] = Line(event.segment_id, speaker, event.start + offset,
                                                       event.end + offset, language=event.language)
            while len(self.lines) > self.max_lines:
                self.lines.pop(next(iter(self.lines)))
        line.end = max(line.end, event.end + offset)
        line.language = event.language or line.language
        if event.type is EventType.INTERIM:
            line.tail = event.text
        else:
            line.text = event.segment_text
            line.tail = ""
            line.words += [{"word": w.text.strip(), "start": round(w.start + offset, 3),
                            "end": round(w.end + offset, 3), "probability": round(w.probability, 3)}
                           for w in event.words]
            if line.words:
                line.start = min(line.start, line.words[0]["start"])
            line.closed = event.segment_final
        return line

    def committed(self) -> list[Line]:
        return sorted((line for line in self.lines.values() if line.text), key=lambda line: line.start)

    def render(self, fmt: str, speakers: bool = True) -> str:
        """The committed transcript as txt, srt, vtt or json."""
        lines = self.committed()
        label = (lambda line: f"{line.speaker}: {line.text}") if speakers else (lambda line: line.text)
        cues = [Cue(line.start, line.end, label(line)) for line in lines]
        doc = {"segments": [line.as_dict() for line in lines]}
        return render(cues, "text" if fmt == "txt" else fmt, doc)


class LiveSpeaker:
    """One speaker's stream on the shared worker. `on_event(speaker, event, line)` runs on
    the loop for every caption event; `offset` puts the speaker's audio on the session's
    clock. A failed stream is reopened, so one bad model call costs a sentence at most."""

    def __init__(self, worker: EngineWorker, config: StreamConfig, *, name: str, transcript: Transcript,
                 on_event: Callable[[LiveSpeaker, Event, Line | None], None] | None = None,
                 offset: float = 0.0):
        self.worker = worker
        self.config = config
        self.name = name
        self.transcript = transcript
        self.on_event = on_event
        self.loop = asyncio.get_running_loop()
        self.received_seconds = 0.0  # audio given, on this speaker's clock
        self.failures = 0
        self.last_lag = 0.0
        self._offset = offset
        self._drained = asyncio.Event()
        self._handle = self._open()

    def _open(self) -> StreamHandle:
        self._drained.clear()
        return self.worker.open(self.config, loop_delivery(self.loop, self._receive),
                                offset=self._offset + self.received_seconds)

    @property
    def lag(self) -> float:
        return self._handle.lag

    @property
    def queued_seconds(self) -> float:
        return self._handle._waiting_seconds()

    def push(self, audio: np.ndarray) -> None:
        """16 kHz mono float32 samples."""
        self.received_seconds += len(audio) / SAMPLE_RATE
        self.worker.push(self._handle, audio)

    def set_language(self, language: str | None) -> None:
        """A fresh stream in the new language; the old one finishes its sentence first."""
        if language == self.config.language:
            return
        self.worker.end(self._handle)
        self.config = dataclasses.replace(self.config, language=language)
        self._handle = self._open()

    async def finish(self, timeout: float = FINISH_TIMEOUT) -> None:
        """No more audio: wait until the tail is captioned, then free the stream."""
        self.worker.end(self._handle)
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("speaker %s: last captions did not come within %.0f s", self.name, timeout)
            self.worker.close(self._handle)

    def close(self) -> None:
        """Drop the stream without waiting for its tail."""
        self.worker.close(self._handle)

    def _receive(self, handle: StreamHandle, item) -> None:
        if isinstance(item, Drained):
            if handle is self._handle:
                self._drained.set()
            return
        if isinstance(item, Failure):
            self.failures += 1
            if handle is self._handle and self.failures <= MAX_RESTARTS:
                logger.warning("speaker %s: stream failed (%s); starting a fresh one", self.name, item.error)
                self._handle = self._open()
            elif handle is self._handle:
                logger.error("speaker %s: stream failed %d times; giving up", self.name, self.failures)
                self._drained.set()
            return
        line = self.transcript.apply(self.name, item, handle.offset)
        if item.type in (EventType.INTERIM, EventType.FINAL):
            self.last_lag = item.lag
        if self.on_event is not None:
            try:
                self.on_event(self, item, line)
            except Exception:  # noqa: BLE001 - a broken listener must not stop the captions
                logger.exception("speaker %s: caption listener failed", self.name)


def whisper_language(code: str | None) -> str | None:
    """A client's language choice as a Whisper code; None (or "auto") means detect.
    Raises ValueError for a code Whisper does not know."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    code = (code or "").strip().lower()
    if code in ("", "auto", "multi", "detect"):
        return None
    base = code.split("-")[0].split("_")[0]
    if base not in _LANGUAGE_CODES:
        raise ValueError(f"unknown language {code!r}: use a Whisper language code such as en or ko, or auto")
    return base
