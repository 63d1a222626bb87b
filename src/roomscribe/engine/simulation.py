"""Play audio through a stream as a live track would be heard.

Three clocks, as in whisper_streaming's evaluation:
- "realtime": audio arrives at 1x on the wall clock; compute happens while it plays.
- "aware": the same, on a virtual clock that advances by the measured compute
  time and jumps over idle waits (1x with compute counted, without the waiting).
- "unaware": compute is free; each chunk is decoded as soon as it is pushed.
`emitted_at` is always how much audio had been played when the event came out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .engine import Engine
from .events import Event, EventType
from .pcm import SAMPLE_RATE
from .stream import StreamConfig

MODES = ("realtime", "aware", "unaware")


@dataclass
class SimulationResult:
    events: list[Event] = field(default_factory=list)
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    wall_seconds: float = 0.0
    decodes: int = 0
    second_hearings: int = 0

    @property
    def rtf(self) -> float:
        return self.compute_seconds / self.audio_seconds if self.audio_seconds else 0.0

    def finals(self) -> list[Event]:
        """FINALs as first committed (revisions apart)."""
        return [e for e in self.events if e.type is EventType.FINAL and e.text and not e.revision]

    def revisions(self) -> list[Event]:
        return [e for e in self.events if e.type is EventType.FINAL and e.revision]

    def text(self) -> str:
        """The captions as they end up: each segment's whole text, revised where it was."""
        shown: dict[str, str] = {}
        for e in self.events:
            if e.type is EventType.FINAL and e.segment_final:
                shown[e.segment_id] = e.segment_text
        return " ".join(t for t in shown.values() if t)

    def segments(self) -> list[Event]:
        return [e for e in self.events if e.type is EventType.FINAL and e.segment_final and e.segment_text]

    def final_word_latencies(self) -> list[float]:
        """Seconds from the end of each word (model timing) to its FINAL."""
        return [e.emitted_at - w.end for e in self.finals() for w in e.words]

    def first_interim_delay(self) -> float | None:
        starts = [e for e in self.events if e.type is EventType.SPEECH_START]
        shown = [e for e in self.events if e.type in (EventType.INTERIM, EventType.FINAL) and e.text]
        if not starts or not shown:
            return None
        return shown[0].emitted_at - starts[0].start


def simulate(
    engine: Engine,
    audio: np.ndarray,
    config: StreamConfig | None = None,
    *,
    mode: str = "aware",
    chunk_seconds: float = 0.02,
    on_event: Callable[[Event], None] | None = None,
    use_vad: bool = True,
) -> SimulationResult:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    stream = engine.open_stream(config, use_vad=use_vad)
    result = SimulationResult(audio_seconds=len(audio) / SAMPLE_RATE)
    chunk = max(1, int(chunk_seconds * SAMPLE_RATE))
    total = len(audio)
    pushed = 0
    clock = 0.0
    wall0 = time.perf_counter()

    def now() -> float:
        return time.perf_counter() - wall0 if mode == "realtime" else clock

    def emit(events: list[Event]) -> None:
        for e in events:
            if mode != "unaware":
                e.emitted_at = now()
            result.events.append(e)
            if on_event is not None:
                on_event(e)

    def work() -> None:
        nonlocal clock
        t = time.perf_counter()
        events = [e for _, e in engine.step([stream])]
        spent = time.perf_counter() - t
        result.compute_seconds += spent
        if mode == "aware":
            clock += spent
        emit(events)

    while True:
        if mode == "unaware":
            target = min(total, pushed + chunk)
        else:
            # Everything that has "arrived" by now, in whole chunks.
            arrived = int(now() * SAMPLE_RATE + 1e-3)  # float clock: do not floor 1 sample short
            target = total if arrived >= total else arrived // chunk * chunk
        if target > pushed:
            t = time.perf_counter()
            events = stream.push(audio[pushed:target])
            spent = time.perf_counter() - t
            result.compute_seconds += spent
            if mode == "aware":
                clock += spent
            pushed = target
            emit(events)
        if pushed >= total and not stream.ended:
            emit(stream.end())
        if stream.ready():
            work()
            continue
        if pushed >= total:
            if stream.idle or not stream.ready():
                break
        if mode == "aware":
            clock = max(clock, (pushed + chunk) / SAMPLE_RATE)
        elif mode == "realtime":
            wait = (pushed + chunk) / SAMPLE_RATE - now()
            if wait > 0:
                time.sleep(wait)
    result.decodes = stream.decodes
    result.second_hearings = stream.second_hearings
    result.wall_seconds = time.perf_counter() - wall0
    return result
