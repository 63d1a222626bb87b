"""The room's caption delivery: every track's captions in order, one send at a time.

`CaptionPublisher` is the sink of every speaker's pipeline in a room. It sends each
track's `session.Caption`s strictly in order through an async `send`; while a send is in
flight, a newer update replaces a queued interim, so a slow link shows the latest text
instead of falling behind. Finals are never dropped: a failed send of a final is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from ..session import Caption

logger = logging.getLogger("roomscribe.agent")

FINAL_SEND_ATTEMPTS = 3

CaptionSend = Callable[[Caption], Awaitable[None]]


class CaptionPublisher:
    def __init__(self, send: CaptionSend):
        self._send = send
        self._queues: dict[str, deque[Caption]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        self._shown: set[tuple[str, str]] = set()  # (track, segment) with text on screen, not final yet
        self.sent_finals = 0
        self.failed_finals = 0
        self.sent_translations = 0

    def publish(self, caption: Caption) -> None:
        """Queue a caption (never blocks)."""
        key = (caption.track, caption.segment_id)
        if not caption.shown:
            # Nothing to show; but an empty final still has to clear an interim on screen, or
            # a final a second hearing retracted.
            if not (caption.final and (key in self._shown or caption.revised)):
                return
        if caption.final:
            self._shown.discard(key)
        else:
            self._shown.add(key)
        queue = self._queues.setdefault(caption.track, deque())
        # Queued interims of this track are stale now: an interim is replaced by any newer
        # caption, and the final ends its segment.
        stale = [c for c in queue if not c.final]
        for c in stale:
            queue.remove(c)
        queue.append(caption)
        if caption.track not in self._senders:
            task = asyncio.create_task(self._drain(caption.track), name=f"captions.{caption.track}")
            self._senders[caption.track] = task

    async def _drain(self, track: str) -> None:
        queue = self._queues[track]
        try:
            while queue:
                caption = queue.popleft()
                await self._deliver(caption)
        finally:
            del self._senders[track]
            if not queue:
                self._queues.pop(track, None)

    async def _deliver(self, caption: Caption) -> None:
        attempts = FINAL_SEND_ATTEMPTS if caption.final else 1
        for attempt in range(1, attempts + 1):
            try:
                await self._send(caption)
                if caption.translated:
                    self.sent_translations += 1
                elif caption.final:
                    self.sent_finals += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a failed send must not stop the track's captions
                logger.warning(
                    "sending caption %s of %s failed (attempt %d/%d): %s",
                    caption.segment_id,
                    caption.participant,
                    attempt,
                    attempts,
                    exc,
                )
                if attempt < attempts:
                    await asyncio.sleep(0.2 * attempt)
        if caption.final and not caption.translated:
            self.failed_finals += 1
            logger.error(
                "final caption %s of %s could not be sent: %r", caption.segment_id, caption.participant, caption.shown
            )

    def forget_track(self, track: str) -> None:
        """The track is gone: drop what is remembered of its segments (its queue still drains)."""
        self._shown = {key for key in self._shown if key[0] != track}

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
