"""Captions and their delivery order.

A `Caption` is one update of one speaker's segment: interims replace each other and
the final replaces them all (same `segment_id`). `CaptionPublisher` sends each
track's captions strictly in order, one at a time, through an async `send`; while a
send is in flight, a newer interim replaces a queued one, so a slow link shows the
latest text instead of falling behind. Finals are never dropped: a failed send of a
final is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger("roomscribe.bot")

FINAL_SEND_ATTEMPTS = 3


@dataclass(frozen=True)
class Caption:
    identity: str  # the participant who spoke
    track_sid: str  # their audio track
    segment_id: str  # stable per utterance: interims and the final share it
    text: str  # the whole segment so far
    final: bool
    language: str = ""
    start_time: float = 0.0  # seconds on the track's clock
    end_time: float = 0.0
    lag: float | None = None  # seconds the caption trails the speaker's audio, when known


CaptionSend = Callable[[Caption], Awaitable[None]]


class CaptionPublisher:
    def __init__(self, send: CaptionSend):
        self._send = send
        self._queues: dict[str, deque[Caption]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self.sent_finals = 0
        self.failed_finals = 0

    def publish(self, caption: Caption) -> None:
        """Queue a caption (never blocks)."""
        queue = self._queues.setdefault(caption.track_sid, deque())
        # Queued interims of this track are stale now: an interim is replaced by any newer
        # caption, and the final ends its segment.
        stale = [c for c in queue if not c.final]
        for c in stale:
            queue.remove(c)
        queue.append(caption)
        if caption.track_sid not in self._senders:
            task = asyncio.create_task(self._drain(caption.track_sid), name=f"captions.{caption.track_sid}")
            self._senders[caption.track_sid] = task

    async def _drain(self, track_sid: str) -> None:
        queue = self._queues[track_sid]
        try:
            while queue:
                caption = queue.popleft()
                await self._deliver(caption)
        finally:
            del self._senders[track_sid]
            if not queue:
                self._queues.pop(track_sid, None)

    async def _deliver(self, caption: Caption) -> None:
        attempts = FINAL_SEND_ATTEMPTS if caption.final else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._send(caption)
                if caption.final:
                    self.sent_finals += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed send must not stop the track's captions
                logger.warning("sending caption %s of %s failed (attempt %d/%d): %s", caption.segment_id,
                               caption.identity, attempt, attempts, exc)
                if attempt < attempts:
                    await asyncio.sleep(0.2 * attempt)
        if caption.final:
            self.failed_finals += 1
            logger.error("final caption %s of %s could not be sent: %r", caption.segment_id, caption.identity,
                         caption.text)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Wait until everything queued has been sent (or `timeout`)."""
        tasks = list(self._senders.values())
        if not tasks:
            return
        done, pending = await asyncio.wait(tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            logger.warning("%d caption senders did not finish in %.0f s", len(pending), timeout)
