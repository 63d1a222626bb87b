"""Files transcribed on the process's model, taking turns with live streams.

The model lock is held per window (`Engine.transcribe`), so a long file never stalls live
captions for more than one window; a few files run at once and a short queue waits. A job
whose caller goes away stops at its next window.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import numpy as np

from ..engine import Engine, OfflineTranscript
from ..engine.clusters import SpeakerHints
from .scheduler import MODEL_LOCK


class QueueFull(RuntimeError):
    """Too many files are waiting already."""


class FileJobs:
    def __init__(self, engine: Engine, max_running: int = 1, max_queued: int = 8):
        self.engine = engine
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(max_running)
        self.running = 0
        self.waiting = 0
        self.done = 0

    def status(self) -> dict:
        return {"running": self.running, "queued": self.waiting, "done": self.done}

    async def run(
        self,
        audio: np.ndarray,
        language: str | None,
        prompt: str | None,
        progress: Callable[[float, float], None] | None = None,
        task: str = "transcribe",
        speakers: SpeakerHints | None = None,
    ) -> OfflineTranscript:
        if self._slots.locked() and self.waiting >= self.max_queued:
            raise QueueFull("too many files waiting; try again later")
        cancel = threading.Event()
        self.waiting += 1
        queued = True
        try:
            async with self._slots:
                self.waiting -= 1
                queued = False
                self.running += 1
                try:
                    return await asyncio.to_thread(
                        self.engine.transcribe,
                        audio,
                        language=language,
                        initial_prompt=prompt,
                        progress=progress,
                        lock=MODEL_LOCK,
                        cancelled=cancel.is_set,
                        task=task,
                        speakers=speakers,
                    )
                finally:
                    self.running -= 1
                    self.done += 1
        except BaseException:
            cancel.set()  # the caller is gone: stop at the next window
            raise
        finally:
            if queued:
                self.waiting -= 1
