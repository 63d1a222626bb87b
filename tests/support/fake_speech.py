"""A scripted speaker with `LiveSpeaker`'s small interface, for unit tests of the room layer.

Audio chunks are words: each word extends the current segment (an interim caption: the
words before it committed, the new one as the tail), "." closes it (a final). As a
`LiveSpeaker` does, it drops audio while paused, and pausing, a new language and finishing
make the segment in progress final. Its captions go through the pipeline the room gave it.
"""

from __future__ import annotations

import asyncio
import itertools

from roomscribe.session import Caption, Pipeline

_ids = itertools.count(1)


class FakeSpeaker:
    def __init__(
        self,
        *,
        name: str,
        track: str,
        language: str | None,
        pipeline: Pipeline,
        lag: float = 0.0,
        prompt: str = "",
        diarize: bool = False,
    ):
        self.name = name
        self.diarize = diarize  # whether the room asked for the voices within the track
        self.prompts = [prompt]  # every prompt it has been given, in order
        self.track = track
        self.language = language
        self.pipeline = pipeline
        self.lag = lag  # what every caption says it trails the audio by
        self.languages = [language]  # every language it has been in, in order
        self.pauses: list[bool] = []  # every set_paused that changed something
        self.pushed: list[str] = []  # words taken in (what a real speaker would decode)
        self.dropped: list[str] = []  # words given while paused
        self.sent: list[Caption] = []
        self.paused = False
        self.finished = False
        self.closed = False
        self._words: list[str] = []
        self._segment = ""

    def set_diarize(self, diarize: bool) -> None:
        self.diarize = diarize

    def set_prompt(self, prompt: str) -> None:
        if prompt != self.prompts[-1]:
            self.prompts.append(prompt)

    def push(self, word: str) -> None:
        if self.paused or self.finished:
            self.dropped.append(word)
            return
        self.pushed.append(word)
        if word == ".":
            self._final()
            return
        if not self._words:
            self._segment = f"SG_fake{next(_ids)}"
        self._words.append(word)
        self._send(final=False)

    def set_language(self, language: str | None) -> None:
        if language == self.language:
            return
        self._final()
        self.language = language
        self.languages.append(language)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        self.pauses.append(paused)
        if paused:
            self._final()

    async def finish(self) -> None:
        await asyncio.sleep(0)  # a real speaker's last final comes back from the engine thread
        self._final()
        self.finished = True
        self.pipeline.drain()

    def close(self) -> None:
        self.closed = True

    def _final(self) -> None:
        if self._words:
            self._send(final=True)
            self._words = []

    def _send(self, final: bool) -> None:
        committed = self._words if final else self._words[:-1]
        caption = Caption(
            participant=self.name,
            track=self.track,
            segment_id=self._segment,
            text=" ".join(committed),
            tail="" if final else self._words[-1],
            final=final,
            language=self.language or "en",
            lag=self.lag,
        )
        self.sent.append(caption)
        self.pipeline.send(caption)


class FrameFeed:
    """An async audio source a test feeds by hand (`put`), ended with `end()`; `fail()`
    makes it raise, as a broken track would."""

    def __init__(self):
        self._queue: asyncio.Queue = asyncio.Queue()

    def put(self, *frames: str) -> None:
        for frame in frames:
            self._queue.put_nowait(frame)

    def end(self) -> None:
        self._queue.put_nowait(None)

    def fail(self) -> None:
        self._queue.put_nowait(ConnectionError("track went away"))

    def __aiter__(self):
        return self

    async def __anext__(self):
        frame = await self._queue.get()
        if frame is None:
            raise StopAsyncIteration
        if isinstance(frame, Exception):
            raise frame
        return frame
