"""A scripted speech stream with the RecognizeStream shape, for unit tests of the room layer.

Frames are words: each word extends the current segment (an interim), "." closes it
(a final), "FAIL" makes the stream fail. flush() and end_input() finalise what is open.
"""

from __future__ import annotations

import asyncio
import itertools

from livekit.agents import stt

_ids = itertools.count(1)


class FakeSpeechStream:
    def __init__(self, language: str | None = None):
        self.language = language
        self.pushed: list[str] = []
        self.flushes = 0
        self.ended = False
        self.closed = False
        self._words: list[str] = []
        self._segment = ""
        self._events: asyncio.Queue = asyncio.Queue()

    def push_frame(self, frame: str) -> None:
        if self.ended:
            raise RuntimeError("input ended")
        self.pushed.append(frame)
        if frame == "FAIL":
            self._events.put_nowait(RuntimeError("model exploded"))
        elif frame == ".":
            self._final()
        else:
            if not self._words:
                self._segment = f"SG_fake{next(_ids)}"
            self._words.append(frame)
            self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT)

    def flush(self) -> None:
        self.flushes += 1
        self._final()

    def end_input(self) -> None:
        if not self.ended:
            self.ended = True
            self._final()
            self._events.put_nowait(None)

    def _final(self) -> None:
        if self._words:
            self._send(stt.SpeechEventType.FINAL_TRANSCRIPT)
            self._words = []

    def _send(self, kind) -> None:
        data = stt.SpeechData(language=self.language or "en", text=" ".join(self._words))
        self._events.put_nowait(stt.SpeechEvent(type=kind, request_id=self._segment, alternatives=[data]))

    def __aiter__(self):
        return self

    async def __anext__(self) -> stt.SpeechEvent:
        item = await self._events.get()
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, Exception):
            raise item
        return item

    async def aclose(self) -> None:
        self.closed = True


class FrameFeed:
    """An async frame source a test feeds by hand (`put`), ended with `end()`."""

    def __init__(self):
        self._queue: asyncio.Queue = asyncio.Queue()

    def put(self, *frames: str) -> None:
        for frame in frames:
            self._queue.put_nowait(frame)

    def end(self) -> None:
        self._queue.put_nowait(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        frame = await self._queue.get()
        if frame is None:
            raise StopAsyncIteration
        return frame
