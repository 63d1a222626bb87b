"""One shared engine per model, driven by one worker thread.

A roomscribe `SpeechStream` is plain state with no locking, and a model call takes
hundreds of milliseconds, so neither may run on an asyncio event loop. Every touch
of an engine's streams (push, end, decode) happens on the engine's worker thread:
callers enqueue commands and get events back on their own loop. While one batched
model call runs, audio from every stream piles up, and the next call serves all
ready streams together (`Engine.step` batches them).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from roomscribe.engine import Engine, EngineConfig, Event, SpeechStream, StreamConfig

from .log import logger

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


def loop_delivery(loop: asyncio.AbstractEventLoop,
                  sink: Callable[[StreamHandle, Any], None]) -> Callable[[StreamHandle, Any], bool]:
    """A `deliver` that calls `sink(handle, item)` on `loop` (dropped once the loop is gone)."""

    def deliver(handle: StreamHandle, item: Any) -> bool:
        try:
            loop.call_soon_threadsafe(sink, handle, item)
            return True
        except RuntimeError:  # loop closed: its owner is gone, nobody is listening
            return False

    return deliver


_OPEN, _PUSH, _END, _CLOSE = "open", "push", "end", "close"


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
    def __init__(self, engine: Engine):
        self.engine = engine
        self.busy = BusyMeter()
        self._commands: queue.SimpleQueue[tuple[str, StreamHandle, Any]] = queue.SimpleQueue()
        self._handles: list[StreamHandle] = []
        self._thread = threading.Thread(target=self._loop, name="roomscribe-engine", daemon=True)
        self._thread.start()

    # -- called from any thread (never blocks) ----------------------------------
    def open(self, config: StreamConfig, deliver: Callable[[StreamHandle, Any], bool],
             offset: float = 0.0) -> StreamHandle:
        handle = StreamHandle(config=config, deliver=deliver, offset=offset)
        self._commands.put((_OPEN, handle, None))
        return handle

    def push(self, handle: StreamHandle, audio: np.ndarray) -> None:
        """Queue 16 kHz mono float32 audio for the stream."""
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
        # Block only when no stream has decoding to do.
        busy = any(h.stream.ready() for h in self._handles)
        try:
            command = self._commands.get(block=not busy)
        except queue.Empty:
            command = None
        while command is not None:  # take every queued command before the next model call
            self._apply(*command)
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                command = None
        self._step()
        for handle in [h for h in self._handles if h.ending and not h.stream.ready()]:
            self._handles.remove(handle)
            self._deliver(handle, Drained())

    def _apply(self, kind: str, handle: StreamHandle, audio: Any) -> None:
        try:
            if kind == _OPEN:
                handle.stream = self.engine.open_stream(handle.config)
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
            results = self._call(ready)
        except Exception as exc:  # noqa: BLE001
            if len(ready) == 1:
                self._fail(ready[0], exc)
                return
            # One stream's window may be what broke the batch: serve each on its own, so only
            # a stream that fails alone is failed (the engine put every window back).
            logger.warning("batched model call for %d streams failed (%s): retrying them one by one",
                           len(ready), exc)
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
        if not handle.deliver(handle, item) and handle in self._handles:
            self._handles.remove(handle)  # its owner's loop is gone: stop decoding for it
