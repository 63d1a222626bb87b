"""The process's translation queue: every room's and session's translations, on one backend.

Captions never wait for it: a stage submits a job and goes on; the job's callback runs on
the event loop when its translation is ready. Under load the queue falls behind in order:
a newer job for the same key (a revised final of the same segment, in the same language)
replaces a queued one; provisional jobs (of interim text) go after every final and are the
first dropped; a final that waited longer than `max_wait` is dropped too, and counted, so
a room that speaks faster than the model translates reads recent translations rather than
ones minutes late.

`status()` says how it goes (lag, failures, the last error) for `/status`, metrics and the
bot's attributes; state listeners are told when translations start or stop failing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from ..stats import percentile
from .backends import Translator
from .prompts import TranslationRequest

logger = logging.getLogger("roomscribe.translation")

MAX_WAIT = 30.0  # seconds a final may wait for the model before it is dropped
MAX_PROVISIONAL = 4  # provisional jobs kept queued; older ones are dropped
FAILING_AFTER = 3  # consecutive failures before the state says "failing"
LAGS_KEPT = 512


@dataclass
class TranslationJob:
    key: Hashable  # (stage, segment, target): a newer job with the same key replaces this one
    request: TranslationRequest
    done: Callable[[str, float], None]  # (translation, seconds it waited and ran), on the loop
    provisional: bool = False
    queued_at: float = field(default_factory=time.monotonic)
    loop: asyncio.AbstractEventLoop | None = None  # where `done` runs (set by `submit`)


class TranslationService:
    """One per process. Rooms run on their own threads and loops (the agent), so the queue is
    thread-safe and the backend runs on the service's own thread and loop; each job's result,
    and each state change, is handed back to the loop it came from."""

    def __init__(
        self,
        translator: Translator,
        *,
        timeout: float = 20.0,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.translator = translator
        self.timeout = timeout
        self.max_wait = max_wait
        self._clock = clock
        self._lock = threading.Lock()
        self._finals: dict[Hashable, TranslationJob] = {}  # insertion order is queue order
        self._provisional: dict[Hashable, TranslationJob] = {}
        self._listeners: list[tuple[asyncio.AbstractEventLoop, Callable[[str, str | None], None]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._ready = threading.Event()
        self._running = 0
        self._prepared = False
        self._loading: asyncio.Future | None = None  # the backend's load, on the service's loop
        self.translated = 0
        self.failed = 0
        self.timed_out = 0
        self.dropped = 0
        self.replaced = 0
        self._consecutive_failures = 0
        self.state = "ok"
        self.last_error: str | None = None
        self._lags: deque[float] = deque(maxlen=LAGS_KEPT)

    def add_state_listener(self, listener: Callable[[str, str | None], None]) -> Callable[[], None]:
        """`listener(state, error)` runs on the caller's loop at each change; returns its remover."""
        entry = (asyncio.get_running_loop(), listener)
        with self._lock:
            self._listeners.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._listeners:
                    self._listeners.remove(entry)

        return remove

    # -- queue ------------------------------------------------------------------------
    def submit(self, job: TranslationJob) -> None:
        """Queue a job (never blocks); call on an event loop: its result comes back there."""
        job.loop = asyncio.get_running_loop()
        job.queued_at = self._clock()
        self._start()
        with self._lock:
            if job.key in self._finals or job.key in self._provisional:
                self.replaced += 1
                self._finals.pop(job.key, None)
                self._provisional.pop(job.key, None)
            (self._provisional if job.provisional else self._finals)[job.key] = job
            while len(self._provisional) > MAX_PROVISIONAL:
                self._provisional.pop(next(iter(self._provisional)))
                self.dropped += 1
        assert self._loop is not None and self._wake is not None
        self._loop.call_soon_threadsafe(self._wake.set)

    def prepare(self) -> None:
        """Have the backend load its model now, in the background (a room asked for languages)."""
        if self._prepared:
            return
        self._prepared = True
        self._start()
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(self._load(), self._loop)
        future.add_done_callback(self._prepared_done)

    def _prepared_done(self, future) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is not None:  # the first translation meets the same error and reports it
            logger.warning("translation model could not be loaded ahead: %s", error)
            self._prepared = False

    def cancel(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget queued jobs whose key matches (a session that ended)."""
        with self._lock:
            for queue in (self._finals, self._provisional):
                for key in [k for k in queue if predicate(k)]:
                    del queue[key]

    @property
    def queued(self) -> int:
        return len(self._finals) + len(self._provisional)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="roomscribe-translation", daemon=True)
                self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        self._loop = loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._wake = asyncio.Event()
        for i in range(max(1, self.translator.concurrency)):
            loop.create_task(self._work(), name=f"roomscribe.translation.{i}")
        loop.call_soon(self._ready.set)
        loop.run_forever()

    def _next(self) -> TranslationJob | None:
        now = self._clock()
        with self._lock:
            while self._finals:
                job = self._finals.pop(next(iter(self._finals)))
                if now - job.queued_at <= self.max_wait:
                    return job
                self.dropped += 1
                logger.warning("translation dropped: it waited %.0f s (the model is behind)", now - job.queued_at)
            if self._provisional:
                return self._provisional.pop(next(iter(self._provisional)))
        return None

    async def _work(self) -> None:
        assert self._wake is not None
        while True:
            job = self._next()
            if job is None:
                self._wake.clear()
                if self.queued:
                    continue
                await self._wake.wait()
                continue
            self._running += 1
            try:
                await self._run(job)
            finally:
                self._running -= 1

    async def _load(self) -> None:
        """Load the backend once, for `prepare` and the first job alike, outside any
        translation's timeout: a model that loads is not a slow translation."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self.translator.prepare())
        loading = self._loading
        try:
            await asyncio.shield(loading)
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._loading is loading:
                self._loading = None  # the next job tries again (and meets the error itself)
            raise

    async def _run(self, job: TranslationJob) -> None:
        work: asyncio.Future | None = None
        try:
            await self._load()
            work = asyncio.ensure_future(self.translator.translate(job.request))
            try:
                text = await asyncio.wait_for(asyncio.shield(work), self.timeout)
            except TimeoutError:
                self.timed_out += 1
                error = f"{self.translator.name} took longer than {self.timeout:.0f} s"
                if self.translator.cancellable:
                    self._failure(error)
                    return
                # The backend runs the translation to its end on a thread of its own, whatever
                # this queue does: giving it up would waste that work and start the next job's
                # clock behind it. It is delivered late instead (the stage drops it if stale).
                self.last_error = error
                logger.warning("translation is slow: %s (it is delivered when it ends)", error)
                text = await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed translation must not stop the others (or captions)
            self.failed += 1
            self._failure(f"{self.translator.name}: {exc}")
            return
        finally:
            if work is not None and not work.done():
                work.cancel()
        waited = self._clock() - job.queued_at
        self._lags.append(waited)
        self.translated += 1
        self._consecutive_failures = 0
        self._set_state("ok", None)
        _call_on(job.loop, job.done, text, waited)

    def _failure(self, error: str) -> None:
        self.last_error = error
        self._consecutive_failures += 1
        logger.warning("translation failed: %s", error)
        if self._consecutive_failures >= FAILING_AFTER or self.translated == 0:
            self._set_state("failing", error)

    def _set_state(self, state: str, error: str | None) -> None:
        if state == self.state:
            return
        self.state = state
        log = logger.error if state == "failing" else logger.info
        log("translation is %s%s", state, f": {error}" if error else "")
        with self._lock:
            listeners = list(self._listeners)
        for loop, listener in listeners:
            _call_on(loop, listener, state, error)

    # -- reporting ----------------------------------------------------------------------
    def status(self) -> dict:
        lags = sorted(self._lags)
        return {
            "backend": self.translator.name,
            "model": self.translator.model,
            "weak_targets": dict(self.translator.weak_targets),
            "state": self.state,
            "last_error": self.last_error,
            "queued": self.queued,
            "running": self._running,
            "translated": self.translated,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "dropped": self.dropped,
            "replaced": self.replaced,
            "lag_p50": round(percentile(lags, 50), 3) if lags else None,
            "lag_p90": round(percentile(lags, 90), 3) if lags else None,
        }

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every queued and running translation is done (or `timeout`)."""
        deadline = self._clock() + timeout
        while (self.queued or self._running) and self._clock() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)  # let a result handed to this loop run

    def close(self) -> None:
        """Stop the service's thread and free the backend (blocking)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            future.result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            if not thread.is_alive():
                loop.close()
            self._loop = self._thread = None
            self._ready = threading.Event()

    async def _shutdown(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.translator.aclose()


def _call_on(loop: asyncio.AbstractEventLoop | None, callback: Callable, *args) -> None:
    """Run `callback(*args)` on `loop`, where it still runs; a failing callback is logged."""

    def call() -> None:
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a broken receiver must not stop the queue
            logger.exception("delivering a translation failed")

    if loop is not None and not loop.is_closed():
        try:
            loop.call_soon_threadsafe(call)
        except RuntimeError:  # closed in between: its room is gone
            pass
