"""One speaker's live audio through the process's shared scheduler, on an asyncio loop.

Every live door (a LiveKit track, the page's WebRTC microphone, an `/asr` connection, the
plugin's `RecognizeStream`) turns its audio into 16 kHz mono float32 (`roomscribe.audio`)
and hands it to a `LiveSpeaker`. The speaker drives an engine stream on the scheduler and
sends what it says, as `Caption`s on the speaker's clock, through its `Pipeline`.

- `set_language`, `flush` and pausing end the engine stream in use: it still finishes
  (its last sentence becomes final), and the next audio opens a fresh one.
- Paused, audio is dropped, so a muted or paused speaker costs no decoding.
- A failed stream is replaced after a back-off (`restart_delays`), so one bad model call
  costs a sentence at most; without restarts, `on_failure` is told instead.
- `finish()` waits for the last final (a participant who leaves mid-word still gets it).
- Where a stage of its pipeline hears captions (`needs_audio`: the `whisper` translator), the
  speaker keeps its last `AUDIO_KEPT` seconds of audio in a fixed ring (`AudioRing`), so a
  final caption's audio can be cut again (`caption_audio`); memory stays flat over hours.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

import numpy as np

from ..audio import SAMPLE_RATE
from ..diarization.extras import DiarizationUnavailableError
from ..engine import Event, EventType, StreamConfig
from .caption import Caption, CaptionBuilder
from .pipeline import Pipeline
from .scheduler import Drained, EngineWorker, Failure, StreamHandle, loop_delivery
from .translation import CAPTION_AUDIO_MARGIN

logger = logging.getLogger("roomscribe.session")

RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # back-off after consecutive stream failures
HEALTHY_AFTER = 30.0  # a stream that lived this long resets the back-off
FINISH_TIMEOUT = 30.0  # the most a finishing speaker waits for its last final
# Seconds of recent audio kept for stages that hear captions: a final comes out seconds after
# its audio, and its translation is queued right away (3.8 MB a speaker).
AUDIO_KEPT = 60.0

Activity = Literal["speech_start", "speech_end"]


class AudioRing:
    """The last `seconds` of a stream of 16 kHz samples in one buffer allocated up front:
    memory stays the same however long the speaker talks. Samples are addressed by their
    index since the first one (`total` so far)."""

    def __init__(self, seconds: float, rate: int = SAMPLE_RATE):
        self.capacity = max(1, round(seconds * rate))
        self.total = 0  # samples given since the start, kept or not
        self._buffer = np.zeros(self.capacity, dtype=np.float32)

    @property
    def nbytes(self) -> int:
        return self._buffer.nbytes

    def write(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        kept = samples[-self.capacity :]  # more than fits: only the newest can be kept
        self._put(self.total + len(samples) - len(kept), kept)
        self.total += len(samples)

    def skip(self, count: int) -> None:
        """Advance the clock by `count` samples that are not kept (dropped audio reads as silence)."""
        kept = min(count, self.capacity)
        self._put(self.total + count - kept, np.zeros(kept, dtype=np.float32))
        self.total += count

    def read(self, first: int, last: int) -> np.ndarray | None:
        """Samples `first` to `last` (a copy), or None where any of them is no longer kept (or
        the span holds none)."""
        first, last = max(0, first), min(last, self.total)
        if last <= first or first < self.total - self.capacity:
            return None
        start = first % self.capacity
        count = last - first
        if start + count <= self.capacity:
            return self._buffer[start : start + count].copy()
        return np.concatenate([self._buffer[start:], self._buffer[: count - (self.capacity - start)]])

    def _put(self, at: int, samples: np.ndarray) -> None:
        start = at % self.capacity
        head = min(len(samples), self.capacity - start)
        self._buffer[start : start + head] = samples[:head]
        self._buffer[: len(samples) - head] = samples[head:]


class LiveSpeaker:
    def __init__(
        self,
        worker: EngineWorker,
        config: StreamConfig,
        *,
        name: str,
        pipeline: Pipeline | None = None,
        offset: float = 0.0,
        track: str = "",
        restart_delays: tuple[float, ...] = RESTART_DELAYS,
        on_activity: Callable[[Activity, float], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        audio_kept: float | None = None,
    ):
        self.worker = worker
        self.config = config
        self.name = name
        self.track = track
        self.pipeline = pipeline or Pipeline()
        self.offset = offset  # where this speaker's audio begins on the caller's clock
        self.restart_delays = restart_delays
        self.on_activity = on_activity
        self.on_failure = on_failure
        self.loop = asyncio.get_running_loop()
        self.received_seconds = 0.0  # audio given, on this speaker's clock (dropped audio too)
        self.dropped_seconds = 0.0  # given while paused or restarting
        self.failures = 0
        self.restarts = 0
        self.last_lag = 0.0
        self.paused = False
        self._handle: StreamHandle | None = None
        self._live: dict[StreamHandle, asyncio.Future[None]] = {}  # streams not yet drained
        self._builders: dict[StreamHandle, CaptionBuilder] = {}
        self._opened_at: dict[StreamHandle, float] = {}
        self._consecutive_failures = 0
        self._blocked_until = 0.0  # loop time before which a failed stream is not reopened
        self._closed = False
        # Recent audio, for a stage that hears captions (None: no stage does, nothing is kept).
        if audio_kept is None:
            audio_kept = AUDIO_KEPT if any(getattr(s, "needs_audio", False) for s in self.pipeline.stages) else 0.0
        self._audio = AudioRing(audio_kept) if audio_kept > 0 else None

    # -- state ------------------------------------------------------------------------
    @property
    def language(self) -> str | None:
        return self.config.language

    @property
    def lag(self) -> float:
        return self._handle.lag if self._handle is not None else 0.0

    @property
    def queued_seconds(self) -> float:
        """Audio given that the engine stream has not taken in yet."""
        return self._handle.waiting_seconds() if self._handle is not None else 0.0

    # -- audio in ---------------------------------------------------------------------
    def push(self, audio: np.ndarray) -> None:
        """16 kHz mono float32 samples."""
        seconds = len(audio) / SAMPLE_RATE
        if self._closed or self.paused or self.loop.time() < self._blocked_until:
            self.received_seconds += seconds
            self.dropped_seconds += seconds
            if self._audio is not None:
                self._audio.skip(len(audio))  # the clock goes on; what was dropped is not kept
            return
        if self._handle is None:
            self._handle = self._open()
        self.received_seconds += seconds
        if self._audio is not None:
            self._audio.write(audio)
        self.worker.push(self._handle, audio)

    def audio_between(self, start: float, end: float) -> np.ndarray | None:
        """The audio given from `start` to `end` seconds on the speaker's clock, as its captions
        carry it (`offset` included); None where it is no longer kept (older than the last
        `AUDIO_KEPT` seconds), or where the speaker keeps none."""
        if self._audio is None:
            return None
        first = round((start - self.offset) * SAMPLE_RATE)
        return self._audio.read(max(0, first), round((end - self.offset) * SAMPLE_RATE))

    def caption_audio(self, caption: Caption) -> np.ndarray | None:
        """A caption's audio, with a margin either side (what a stage that hears captions gets)."""
        return self.audio_between(caption.start - CAPTION_AUDIO_MARGIN, caption.end + CAPTION_AUDIO_MARGIN)

    # -- control ----------------------------------------------------------------------
    def set_language(self, language: str | None) -> None:
        """A fresh stream in the new language; the old one finishes its sentence first."""
        if language == self.config.language:
            return
        logger.info("speaker %s now in %s", self.name, language or "the detected language")
        self._end_current()
        self.config = dataclasses.replace(self.config, language=language)

    def set_diarize(self, diarize: bool) -> None:
        """Tell the voices on the track apart from now on, or stop: a fresh stream, the old
        one finishes its sentence first. Where this process cannot diarize, the error is
        logged and the track stays one speaker."""
        if diarize == self.config.diarize:
            return
        if diarize:
            try:
                self.worker.engine.check_diarization(self.config.speakers)
            except (DiarizationUnavailableError, ValueError) as exc:
                logger.error("%s has several voices, but %s: captioned as one speaker", self.name, exc)
                return
        logger.info("speaker %s %s", self.name, "now diarized" if diarize else "no longer diarized")
        self._end_current()
        self.config = dataclasses.replace(self.config, diarize=diarize)

    def set_prompt(self, prompt: str) -> None:
        """New names and words to expect, from the next decode on (the sentence in progress
        goes on in the same stream)."""
        if prompt == self.config.prompt:
            return
        self.config = dataclasses.replace(self.config, prompt=prompt)
        if self._handle is not None:
            # A new list for the stream to read on its next request: nothing shared is mutated.
            self._handle.stream.set_prompt(prompt)

    def set_paused(self, paused: bool) -> None:
        """Paused: audio is dropped; the sentence in progress is finalised now."""
        if paused == self.paused:
            return
        self.paused = paused
        if paused:
            self._end_current()

    def flush(self) -> asyncio.Future[None] | None:
        """Finalise what the stream holds now; the next audio opens a fresh one. Returns a
        future done once its last caption has gone through (None: nothing was open)."""
        handle = self._end_current()
        return self._live.get(handle) if handle is not None else None

    async def finish(self, timeout: float = FINISH_TIMEOUT) -> None:
        """No more audio: wait until the tail is captioned, then free the streams."""
        self._end_current()
        self._closed = True
        waiting = [f for f in self._live.values() if not f.done()]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=timeout)
            if pending:
                logger.warning("speaker %s: last captions did not come within %.0f s", self.name, timeout)
                self.close()
        self.pipeline.drain()

    def close(self) -> None:
        """Drop the streams without waiting for their tails."""
        self._closed = True
        self._handle = None
        for handle in list(self._live):
            self.worker.close(handle)
            self._forget(handle)

    # -- internals --------------------------------------------------------------------
    def _open(self) -> StreamHandle:
        handle = self.worker.open(self.config, loop_delivery(self.loop, self._receive), offset=self.received_seconds)
        self._live[handle] = self.loop.create_future()
        self._builders[handle] = CaptionBuilder(self.name, offset=self.offset + self.received_seconds, track=self.track)
        self._opened_at[handle] = self.loop.time()
        return handle

    def _end_current(self) -> StreamHandle | None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self.worker.end(handle)
        return handle

    def _forget(self, handle: StreamHandle) -> None:
        waiter = self._live.pop(handle, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._builders.pop(handle, None)
        self._opened_at.pop(handle, None)

    def _receive(self, handle: StreamHandle, item: Event | Drained | Failure) -> None:
        if isinstance(item, Drained):
            self._forget(handle)
        elif isinstance(item, Failure):
            self._failed(handle, item.error)
        else:
            self._event(handle, item)

    def _failed(self, handle: StreamHandle, error: BaseException) -> None:
        lived = self.loop.time() - self._opened_at.get(handle, self.loop.time())
        self._forget(handle)
        self.failures += 1
        current = handle is self._handle
        if current:
            self._handle = None
        if not self.restart_delays:  # the door decides (an ending stream's failure is news too)
            logger.warning("speaker %s: stream failed (%s)", self.name, error)
            if self.on_failure is not None:
                self.on_failure(error)
            return
        if not current:
            return  # an ending stream: the current one goes on
        if lived >= HEALTHY_AFTER:
            self._consecutive_failures = 0
        delay = self.restart_delays[min(self._consecutive_failures, len(self.restart_delays) - 1)]
        self._consecutive_failures += 1
        self.restarts += 1
        self._blocked_until = self.loop.time() + delay
        logger.error(
            "speaker %s: stream failed (%s); a fresh one starts in %.1f s", self.name, error, delay, exc_info=error
        )

    def _event(self, handle: StreamHandle, event: Event) -> None:
        if event.type is EventType.SPEECH_START or event.type is EventType.SPEECH_END:
            if event.type is EventType.SPEECH_END and handle is self._handle:
                self.pipeline.drain()  # nothing of this utterance is pending any more
            if self.on_activity is not None:
                self.on_activity(event.type.value, event.start)  # type: ignore[arg-type]
            return
        builder = self._builders.get(handle)
        caption = builder.caption(event) if builder is not None else None
        if caption is None:
            return
        self.last_lag = caption.lag
        self.pipeline.send(caption)
