"""What happens to captions after the engine: an ordered list of stages, then the sinks.

A stage takes each caption and passes on what comes after it should see: the same caption,
a changed one (a speaker label, a translation), several (a caption split where the voice
changes), a later one (a throttled interim), or none. A sink is where captions leave the
process or are kept: the LiveKit publisher, the page's data channel, `/asr`, a transcript,
the terminal. A door builds a speaker's pipeline from the stages and sinks it wants; a new
stage or sink touches no door.

A stage or sink that raises is logged; the captions still reach every other sink.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from .caption import Caption

logger = logging.getLogger("roomscribe.session")

Emit = Callable[[Caption], None]


class Sink(Protocol):
    def __call__(self, caption: Caption) -> None: ...


class Stage:
    """A step between the engine and the sinks; the base class passes captions on unchanged."""

    def process(self, caption: Caption, emit: Emit) -> None:
        emit(caption)

    def drain(self, emit: Emit) -> None:  # noqa: B027 - a stage that holds nothing has nothing to do
        """The speaker is finishing: pass on anything held back."""


class Pipeline:
    def __init__(self, stages: Iterable[Stage] = (), sinks: Iterable[Sink] = ()):
        self.stages = list(stages)
        self.sinks = list(sinks)

    def add_sink(self, sink: Sink) -> None:
        self.sinks.append(sink)

    def send(self, caption: Caption) -> None:
        self._at(0)(caption)

    def drain(self) -> None:
        """Flush every stage in order (what a stage lets out goes through the later ones)."""
        for i, stage in enumerate(self.stages):
            try:
                stage.drain(self._at(i + 1))
            except Exception:  # noqa: BLE001 - one broken stage must not keep the others from draining
                logger.exception("caption stage %s failed to drain", type(stage).__name__)

    def _at(self, index: int) -> Emit:
        if index >= len(self.stages):
            return self._to_sinks
        stage, after = self.stages[index], self._at(index + 1)

        def emit(caption: Caption) -> None:
            try:
                stage.process(caption, after)
            except Exception:  # noqa: BLE001 - the caption goes on as it was
                logger.exception("caption stage %s failed", type(stage).__name__)
                after(caption)

        return emit

    def _to_sinks(self, caption: Caption) -> None:
        for sink in self.sinks:
            try:
                sink(caption)
            except Exception:  # noqa: BLE001 - a broken sink must not stop the captions of the others
                logger.exception("caption sink %r failed", sink)


class InterimThrottle(Stage):
    """At most one caption update that is not final per `interval` seconds; the newest one
    goes out when the interval has passed. A final passes at once and supersedes a held
    update. `interval=inf` lets only finals through."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        if interval < 0:
            raise ValueError("the interim interval must be >= 0")
        self.interval = interval
        self._clock = clock
        self._held: Caption | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._last_sent = -math.inf

    def process(self, caption: Caption, emit: Emit) -> None:
        if caption.final:
            self._drop()
            emit(caption)
            return
        if math.isinf(self.interval):
            return
        self._held = caption
        wait = self._last_sent + self.interval - self._clock()
        if wait <= 0:
            self._release(emit)
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._release, emit)

    def drain(self, emit: Emit) -> None:
        self._drop()  # a held update is superseded by the final the finishing stream sends

    def _release(self, emit: Emit) -> None:
        held = self._held
        self._drop()
        if held is not None:
            self._last_sent = self._clock()
            emit(held)

    def _drop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._held = None
