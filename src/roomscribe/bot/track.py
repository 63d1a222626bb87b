"""One speaker's audio track: frames in, captions out.

A `TrackCaptioner` feeds a track's frames into a speech stream (the roomscribe
`RecognizeStream`, or anything with the same push_frame / flush / end_input / async
iteration / aclose shape) and turns its transcripts into `Caption`s.

- Inactive (muted, or captions paused) it drops frames, so it costs no decoding; on
  going inactive it flushes, so the sentence in progress still becomes a final.
- A changed language starts a fresh stream; the old one finishes its sentence first.
- A failing stream is logged and replaced after a short back-off; only this track
  is affected.
- `close()` ends the input and waits for the last final, so a speaker who leaves
  mid-sentence still gets that sentence captioned; then the state is freed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable
from typing import Any, Protocol

from livekit.agents import stt

from .captions import Caption

logger = logging.getLogger("roomscribe.bot")

RESTART_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)  # back-off after consecutive stream failures
HEALTHY_AFTER = 30.0  # a stream that lived this long resets the back-off
CLOSE_TIMEOUT = 20.0  # the most a leaving track waits for its last final


class SpeechStreamLike(Protocol):
    def push_frame(self, frame: Any) -> None: ...
    def flush(self) -> None: ...
    def end_input(self) -> None: ...
    def __aiter__(self): ...
    async def aclose(self) -> None: ...


OpenStream = Callable[[str | None], SpeechStreamLike]


class TrackCaptioner:
    def __init__(self, *, identity: str, track_sid: str, frames: AsyncIterable[Any], open_stream: OpenStream,
                 publish: Callable[[Caption], None], language: str | None = None, active: bool = True,
                 restart_delays: tuple[float, ...] = RESTART_DELAYS):
        self.identity = identity
        self.track_sid = track_sid
        self._frames = frames
        self._open_stream = open_stream
        self._publish = publish
        self._language = language
        self._active = active
        self._restart_delays = restart_delays
        self._stream: SpeechStreamLike | None = None
        self._consumers: set[asyncio.Task[None]] = set()
        self._pump: asyncio.Task[None] | None = None
        self._restart: asyncio.TimerHandle | None = None
        self._failures = 0
        self._closing = False
        self._pushed: dict[int, float] = {}  # per open stream: seconds of audio given (its clock)
        self.restarts = 0
        self.frames_dropped = 0

    @property
    def language(self) -> str | None:
        return self._language

    @property
    def active(self) -> bool:
        return self._active

    def start(self) -> None:
        self._open()
        self._pump = asyncio.create_task(self._pump_frames(), name=f"roomscribe.frames.{self.track_sid}")

    def set_active(self, active: bool) -> None:
        if active == self._active:
            return
        self._active = active
        if not active and self._stream is not None:
            self._stream.flush()  # the sentence in progress becomes final now

    def set_language(self, language: str | None) -> None:
        if language == self._language:
            return
        logger.info("captions of %s now in %s", self.identity, language or "the detected language")
        self._language = language
        if self._stream is not None and not self._closing:
            old = self._stream
            self._open()
            old.end_input()  # its consumer publishes what it still holds, then closes it

    async def close(self) -> None:
        """End the input, publish the last final, free the stream."""
        if self._closing:
            return
        self._closing = True
        if self._restart is not None:
            self._restart.cancel()
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        if self._stream is not None:
            self._stream.end_input()
            self._stream = None
        if self._consumers:
            _, pending = await asyncio.wait(list(self._consumers), timeout=CLOSE_TIMEOUT)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("track %s of %s: the last final did not come in %.0f s", self.track_sid,
                               self.identity, CLOSE_TIMEOUT)
                await asyncio.gather(*pending, return_exceptions=True)

    # -- internals ----------------------------------------------------------------
    def _open(self) -> None:
        self._restart = None
        if self._closing:
            return
        stream = self._open_stream(self._language)
        self._stream = stream
        self._pushed[id(stream)] = 0.0
        task = asyncio.create_task(self._consume(stream), name=f"roomscribe.captions.{self.track_sid}")
        self._consumers.add(task)
        task.add_done_callback(self._consumers.discard)

    async def _pump_frames(self) -> None:
        async for frame in self._frames:
            stream = self._stream
            if not self._active or stream is None:
                self.frames_dropped += 1
                continue
            try:
                stream.push_frame(frame)
                self._pushed[id(stream)] += getattr(frame, "duration", 0.0)
            except RuntimeError:  # the stream failed and closed its input: a new one is on its way
                self.frames_dropped += 1

    async def _consume(self, stream: SpeechStreamLike) -> None:
        opened = time.monotonic()
        try:
            async for event in stream:
                self._on_event(event, self._pushed.get(id(stream), 0.0))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - one track's failure stays with that track
            logger.error("captioning %s (track %s) failed: %s", self.identity, self.track_sid, exc, exc_info=exc)
            if stream is self._stream:
                self._stream = None
                self._schedule_restart(time.monotonic() - opened)
        finally:
            self._pushed.pop(id(stream), None)
            try:
                await stream.aclose()
            except Exception:  # noqa: BLE001
                logger.debug("closing a failed stream raised", exc_info=True)

    def _schedule_restart(self, lived: float) -> None:
        if self._closing:
            return
        if lived >= HEALTHY_AFTER:
            self._failures = 0
        delay = self._restart_delays[min(self._failures, len(self._restart_delays) - 1)]
        self._failures += 1
        self.restarts += 1
        logger.info("restarting captions of %s in %.1f s", self.identity, delay)
        self._restart = asyncio.get_running_loop().call_later(delay, self._open)

    def _on_event(self, event: stt.SpeechEvent, pushed_seconds: float = 0.0) -> None:
        if event.type not in (stt.SpeechEventType.INTERIM_TRANSCRIPT, stt.SpeechEventType.FINAL_TRANSCRIPT):
            return
        if not event.alternatives or not event.alternatives[0].text.strip() or not event.request_id:
            return  # an empty final only acknowledges a flush
        data = event.alternatives[0]
        self._publish(Caption(
            identity=self.identity,
            track_sid=self.track_sid,
            segment_id=event.request_id,
            text=data.text.strip(),
            final=event.type is stt.SpeechEventType.FINAL_TRANSCRIPT,
            language=str(data.language or ""),
            start_time=float(data.start_time or 0.0),
            end_time=float(data.end_time or 0.0),
            # Audio given to the stream minus the caption's end: the caption's own lag.
            lag=max(0.0, pushed_seconds - data.end_time) if pushed_seconds and data.end_time else None,
        ))
