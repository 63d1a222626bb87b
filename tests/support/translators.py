"""Scripted translators, for tests of the layers above a backend (the queue, the stage, the
doors). The real backends are tested against real models in tests/translation."""

from __future__ import annotations

import asyncio

from roomscribe.translation import TranslationFailedError, TranslationRequest


class ScriptedTranslator:
    """Translates `text` into `"[ko] text"`, after `delay` seconds; `fail` makes every
    request raise, `hang` makes it never return."""

    name = "scripted"
    model = "scripted"
    cancellable = True

    def __init__(self, delay: float = 0.0, concurrency: int = 1, load_delay: float = 0.0):
        self.delay = delay
        self.load_delay = load_delay
        self.concurrency = concurrency
        self.weak_targets: dict[str, str] = {}
        self.prepared = 0  # times the backend was asked to load ahead of use
        self.fail = False
        self.hang = False
        self.requests: list[TranslationRequest] = []
        self.closed = False

    async def prepare(self) -> None:
        self.prepared += 1
        await asyncio.sleep(self.load_delay)

    async def translate(self, request: TranslationRequest) -> str:
        self.requests.append(request)
        if self.hang:
            await asyncio.Event().wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise TranslationFailedError("the backend is down")
        return f"[{request.target}] {request.text}"

    async def aclose(self) -> None:
        self.closed = True
