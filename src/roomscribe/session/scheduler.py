"""One shared engine per model, driven by one worker thread.

A roomscribe `SpeechStream` is plain state with no locking, and a model call takes
hundreds of milliseconds, so neither may run on an asyncio event loop. Every touch
of an engine's streams (push, end, decode) happens on the engine's worker thread:
callers enqueue commands and get events back on their own loop. While one batched
model call runs, audio from every stream piles up, and the next call serves the
ready streams together, the longest-waiting first (`Engine.step` batches them).

When compute falls behind, a `LagGovernor` slows every stream down a level, so lag
stays bounded. Each stream's lag, the level and the model's busy share are in
`EngineWorker.status()`.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine import Engine, EngineConfig, Event, SpeechStream, StreamConfig
from ..engine.pcm import SAMPLE_RATE
from .governor import LagGovernor

logger = logging.getLogger("roomscribe.session")

# Only one model call at a time in the process: on CPU each call already uses every
# core, and two at once would only slow both down.
MODEL_LOCK = threading.Lock()

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()
_workers: dict[int, EngineWorker] = {}
_workers_lock = threading.Lock()


def shared_engine(model: str) -> Engine:
    """The process's engine for `model`, loaded on first use (slow: call it off the loop)."""
    with _engines_lock:
        engine = _engines.get(model)
        if engine is None:
            logger.info("loading roomscribe model %r", model)
            engine = _engines[model] = Engine(EngineConfig(model=model))
        return engine


def all_workers() -> list[EngineWorker]:
    with _workers_lock:
        return list(_workers.values())


def worker_for(engine: Engine) -> EngineWorker:
    """The worker thread that owns `engine`'s streams (one per engine, started on demand)."""
    with _workers_lock:
        worker = _workers.get(id(engine))
        if worker is None or worker.engine is not engine:
            worker = _workers[id(engine)] = EngineWorker(engine)
        return worker


class Drained:
    """Delivered once a stream that was ended has decoded everything it held."""


@dataclass
class Failure:
    """Delivered when a model call serving the stream failed; the stream is dropped."""

    error: BaseException


@dataclass(eq=False)
class StreamHandle:
    """A caller's engine stream. `deliver(handle, item)` is called on the worker thread
    with an `Event`, `Drained` or `Failure`; it must be thread-safe, and it returns
    False once nobody listens (the stream is then dropped)."""

    config: StreamConfig
    deliver: Callable[[StreamHandle, Event | Drained | Failure], bool]
    offset: float = 0.0  # seconds of the caller's audio before this engine stream began
    stream: SpeechStream | None = None
    ending: bool = False
    queued_seconds: float = 0.0  # audio the caller has pushed (some may wait in the queue)
    lag: float = 0.0  # seconds the oldest speech not yet captioned has waited

    def waiting_seconds(self) -> float:
        """Audio pushed by the caller that the stream has not taken in yet."""
        return max(0.0, self.queued_seconds - self.stream.received_seconds) if self.stream else 0.0


def loop_delivery(
    loop: asyncio.AbstractEventLoop, sink: Callable[[StreamHandle, Any], None]
) -> Callable[[StreamHandle, Any], bool]:
    """A `deliver` that calls `sink(handle, item)` on `loop` (dropped once the loop is gone)."""

    def deliver(handle: StreamHandle, item: Any) -> bool:
        try:
            loop.call_soon_threadsafe(sink, handle, item)
            return True
        except RuntimeError:  # loop closed: its owner is gone, nobody is listening
            return False

    return deliver


_OPEN, _PUSH, _END, _CLOSE = "open", "push", "end", "close"
# Lags are measured and the pace set at most this often: the loop turns for every pushed
# frame, and with dozens of tracks measuring each time would cost more than it tells.
PACE_EVERY = 0.1


class BusyMeter:
    """The share of recent wall time the model spent in calls (thread-safe)."""

    def __init__(self, window: float = 5.0):
        self.window = window
        self._calls: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def record(self, start: float, end: float) -> None:
        with self._lock:
            self._calls.append((start, end))
            while self._calls and self._calls[0][1] < end - self.window:
                self._calls.popleft()

    def fraction(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        since = now - self.window
        with self._lock:
            busy = sum(min(end, now) - max(start, since) for start, end in self._calls if end > since)
        return max(0.0, min(1.0, busy / self.window))


class EngineWorker:
    def __init__(self, engine: Engine, governor: LagGovernor | None = None):
        self.engine = engine
        self.busy = BusyMeter()
        self.governor = governor or LagGovernor()
        self._paced_at = 0.0
        self._commands: queue.SimpleQueue[tuple[str, StreamHandle, Any]] = queue.SimpleQueue()
        self._handles: list[StreamHandle] = []
        self._thread = threading.Thread(target=self._loop, name="roomscribe-engine", daemon=True)
        self._thread.start()

    # -- called from any thread (never blocks) ----------------------------------
    def open(
        self, config: StreamConfig, deliver: Callable[[StreamHandle, Any], bool], offset: float = 0.0
    ) -> StreamHandle:
        handle = StreamHandle(config=config, deliver=deliver, offset=offset)
        self._commands.put((_OPEN, handle, None))
        return handle

    def push(self, handle: StreamHandle, audio: np.ndarray) -> None:
        """Queue 16 kHz mono float32 audio for the stream."""
        handle.queued_seconds += len(audio) / SAMPLE_RATE
        self._commands.put((_PUSH, handle, audio))

    def end(self, handle: StreamHandle) -> None:
        """No more audio: decode the tail, then deliver `Drained`."""
        self._commands.put((_END, handle, None))

    def close(self, handle: StreamHandle) -> None:
        """Drop the stream without decoding what it holds."""
        self._commands.put((_CLOSE, handle, None))

    @property
    def open_streams(self) -> int:
        return len(self._handles)

    @property
    def max_lag(self) -> float:
        return max((h.lag for h in list(self._handles)), default=0.0)

    def status(self) -> dict:
        """A snapshot for status pages and metrics (safe from any thread)."""
        handles = list(self._handles)
        pace = self.governor.pace
        return {
            "model": self.engine.model_name,
            "streams": len(handles),
            "busy": round(self.busy.fraction(), 3),
            "max_lag": round(max((h.lag for h in handles), default=0.0), 3),
            "level": self.governor.level,
            "saturated": self.governor.saturated,
            "decode_interval_scale": pace.interval_scale,
            "max_window_seconds": pace.max_window_seconds,
            "max_batch": self.engine.config.max_batch,
            "stream_lags": {h.stream.id: round(h.lag, 3) for h in handles if h.stream is not None},
        }

    # -- the worker thread ----------------------------------------------------------
    def _loop(self) -> None:
        while True:
            try:
                self._iterate()
            except Exception as exc:  # noqa: BLE001 - the thread must outlive any one failure
                logger.exception("roomscribe engine worker failed")
                failed, self._handles = self._handles, []
                for handle in failed:
                    self._deliver(handle, Failure(exc))

    def _iterate(self) -> None:
        # Block only when no stream has decoding to do; while slowed down, wake up now and
        # then, so the governor sees the calm and speeds up (the load reports it meanwhile).
        busy = any(h.stream.ready() for h in self._handles)
        try:
            command = self._commands.get(block=not busy, timeout=1.0 if self.governor.level else None)
        except queue.Empty:
            command = None
        while command is not None:  # take every queued command before the next model call
            self._apply(*command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                command = None
        now = time.monotonic()
        if now - self._paced_at >= PACE_EVERY:
            self._paced_at = now
            self._pace()
        self._step()
        for handle in [h for h in self._handles if h.ending and not h.stream.ready()]:
            self._handles.remove(handle)
            self._deliver(handle, Drained())

    def _pace(self) -> None:
        """Measure every stream's lag and let the governor set the pace."""
        if not self._handles:
            self.governor.reset()  # nobody to be behind on
            return
        worst_overdue = 0.0
        for handle in self._handles:
            stream = handle.stream
            lag = stream.lag_seconds
            handle.lag = lag + handle.waiting_seconds() if lag else 0.0
            worst_overdue = max(worst_overdue, handle.lag - stream.decode_interval)
        pace = self.governor.update(worst_overdue, time.monotonic())
        for handle in self._handles:
            if handle.stream.pace != pace:
                if handle is self._handles[0]:
                    logger.info(
                        "decode pace: level %d (interval x%.1f, window %s s)",
                        self.governor.level,
                        pace.interval_scale,
                        pace.max_window_seconds or "full",
                    )
                handle.stream.pace = pace

    def _apply(self, kind: str, handle: StreamHandle, audio: Any) -> None:
        try:
            if kind == _OPEN:
                handle.stream = self.engine.open_stream(handle.config)
                handle.stream.pace = self.governor.pace
                self._handles.append(handle)
            elif handle not in self._handles:
                return  # closed or failed already
            elif kind == _PUSH:
                for event in handle.stream.push(audio):
                    self._deliver(handle, event)
            elif kind == _END:
                handle.ending = True
                handle.stream.end()
            elif kind == _CLOSE:
                self._handles.remove(handle)
        except Exception as exc:  # noqa: BLE001 - one bad stream must not stop the others
            logger.exception("roomscribe stream command %s failed", kind)
            if handle in self._handles:
                self._handles.remove(handle)
            self._deliver(handle, Failure(exc))

    def _step(self) -> None:
        ready = [h for h in self._handles if h.stream.ready()]
        if not ready:
            return
        try:
            # The engine picks the batch; streams not due yet may ride along.
            results = self._call(list(self._handles))
        except Exception as exc:  # noqa: BLE001
            if len(self._handles) == 1:
                self._fail(ready[0], exc)
                return
            # One stream's window may be what broke the batch: serve each on its own, so only
            # a stream that fails alone is failed (the engine put every window back).
            logger.warning("batched model call failed (%s): retrying its streams one by one", exc)
            results = []
            for handle in ready:
                try:
                    results += self._call([handle])
                except Exception as one:  # noqa: BLE001
                    self._fail(handle, one)
        for handle, event in results:
            self._deliver(handle, event)

    def _call(self, handles: list[StreamHandle]) -> list[tuple[StreamHandle, Any]]:
        by_stream = {id(h.stream): h for h in handles}
        started = time.monotonic()
        try:
            with MODEL_LOCK:
                results = self.engine.step([h.stream for h in handles])
        finally:
            self.busy.record(started, time.monotonic())
        return [(by_stream[id(stream)], event) for stream, event in results]

    def _fail(self, handle: StreamHandle, exc: BaseException) -> None:
        logger.error("roomscribe model call failed", exc_info=exc)
        if handle in self._handles:
            self._handles.remove(handle)
        self._deliver(handle, Failure(exc))

    def _deliver(self, handle: StreamHandle, item: Any) -> None:
        if isinstance(item, Event) and handle.stream is not None:
            # Audio waiting in the queue has been given too: count it in the caption's lag.
            item.emitted_at += handle.waiting_seconds()
        if not handle.deliver(handle, item) and handle in self._handles:
            self._handles.remove(handle)  # its owner's loop is gone: stop decoding for it
