"""The `whisper` backend: Whisper's own translation into English, on the process's speech model.

Whisper decodes speech in any of its languages straight into English text (`task="translate"`).
This backend does not read a caption's text: it hears the caption again. The stage sends each
final caption's span of the speaker's audio with its request (`needs_audio`), and the backend
decodes it a second time on the engine the process already has, so it needs no package and
no second model (one model per process).

Captions keep their turns. A translation is one window decode of the caption's audio, the
same kind of call a live stream makes (`WhisperRunner.decode`: its length bounded by the
audio's, no fallback re-decodes, no word alignment), under the model lock for that call only;
a caption longer than a window is decoded in pieces, each under the lock on its own. Live
streams decode between them, as they do between a file's windows.

It translates into English only (`targets`); a room or session that asks this process for any
other language is refused where its languages are set (`translation.refused_targets`). The
room's names and the speaker's previous translations are Whisper's prompt, so names and
wording carry over from one sentence to the next; a decode that only copies its prompt (as
Whisper does on unclear audio) is heard again without one. A phrase the decoder loops on ("the
monk of the monk of ...") is kept once. An English-only model (`tiny.en`) cannot translate: the
first translation says so.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from ..engine.pcm import SAMPLE_RATE
from .errors import ONLY_TARGETS, TranslationFailedError, TranslationUnavailableError, targets_refusal
from .prompts import TranslationRequest

if TYPE_CHECKING:
    from ..engine import Engine

CONTEXT_SENTENCES = 2  # earlier translations given as Whisper's prompt
MAX_PINNED_TOKENS = 64  # of the room's names, as a stream pins its vocabulary
PIECE_SECONDS = 28.0  # a window holds 30 s, less the engine's lead and padding
MAX_LOOP_WORDS = 12  # the longest phrase looked for as a decoder loop


def pieces(audio: np.ndarray, seconds: float = PIECE_SECONDS) -> list[np.ndarray]:
    """The audio in consecutive pieces that each fit one window."""
    size = int(seconds * SAMPLE_RATE)
    return [audio[i : i + size] for i in range(0, len(audio), size)]


def collapse_loops(text: str) -> str:
    """The text with a phrase repeated back to back kept once: a decoder loop. A phrase must
    come three times in a row (a word or two, four) before it counts: a speaker says
    "very, very" or "no, no", a decoder says "I'm sorry, sir" on and on."""
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        for length in range(1, min(MAX_LOOP_WORDS, (len(words) - i) // 2) + 1):
            pattern = [_bare(w) for w in words[i : i + length]]
            copies = 1
            while [_bare(w) for w in words[i + copies * length : i + (copies + 1) * length]] == pattern:
                copies += 1
            if copies >= (4 if length <= 2 else 3):
                out.extend(words[i : i + length])
                i += copies * length
                rest = [_bare(w) for w in words[i:]]
                if rest and rest == pattern[: len(rest)]:
                    i = len(words)  # the loop ran into the length limit mid-copy
                break
        else:
            out.append(words[i])
            i += 1
    return " ".join(out)


def echoes(text: str, prompt: str, min_words: int = 3) -> bool:
    """Whether `text` is only words of the prompt again, in order (at least `min_words`)."""
    said, given = [_bare(w) for w in text.split()], [_bare(w) for w in prompt.split()]
    if len(said) < min_words:
        return False
    return any(given[i : i + len(said)] == said for i in range(len(given) - len(said) + 1))


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'").lower()


def process_engine() -> Engine | None:
    """The process's speech engine: the one its scheduler drives (`session.scheduler.worker_for`;
    the agent, the server and the plugin each start it for their one engine). None before any
    door has started one."""
    from ..session.scheduler import all_workers

    workers = all_workers()
    return workers[0].engine if workers else None


class WhisperTranslator:
    name = "whisper"
    concurrency = 1  # the model serves one call at a time in any case (the model lock)
    needs_audio = True
    cancellable = True  # the decode stops at its next window
    targets: tuple[str, ...] | None = ONLY_TARGETS["whisper"]

    def __init__(self, engine: Engine | None = None):
        self.engine = engine  # None: the process's engine, found at the first translation
        self.weak_targets: dict[str, str] = {}
        # One decode at a time, in order; a decode that outlived its timeout stops at its next
        # window, and the next one waits behind it rather than beside it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="roomscribe-whisper-translation")

    @property
    def model(self) -> str:
        engine = self.engine or process_engine()
        return engine.model_name if engine is not None else "the process's speech model"

    def use_engine(self, engine: Engine) -> None:
        """Translate on this engine (a door that holds its engine without a scheduler: the CLI)."""
        self.engine = engine

    def _engine(self) -> Engine:
        engine = self.engine or process_engine()
        if engine is None:
            raise TranslationUnavailableError(
                "the whisper translator decodes on the process's speech model, and none is running here"
            )
        if not engine.runner.multilingual:
            raise TranslationUnavailableError(
                f"the whisper translator needs a multilingual speech model; {engine.model_name} is English-only "
                "(set ROOMSCRIBE_MODEL to a multilingual one, such as base)"
            )
        self.engine = engine
        return engine

    async def prepare(self) -> None:
        """Nothing to load (the speech model is loaded): check that it can translate."""
        self._engine()

    async def translate(self, request: TranslationRequest) -> str:
        refused = targets_refusal(self.name, self.targets, [request.target])
        if refused:
            raise TranslationFailedError(refused)
        if request.audio is None or len(request.audio) == 0:
            raise TranslationFailedError(
                "the whisper translator translates the caption's audio, and the request has none "
                "(the door gives no audio, or the speaker's audio of it is no longer kept)"
            )
        engine = self._engine()
        stop = threading.Event()
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self.translate_blocking, engine, request, stop.is_set)
        except asyncio.CancelledError:
            stop.set()  # timed out: the decode stops at its next window
            raise

    def translate_blocking(
        self, engine: Engine, request: TranslationRequest, cancelled: Callable[[], bool] | None = None
    ) -> str:
        from ..engine.text import tidy_text
        from ..engine.whisper import MAX_CONTEXT_TOKENS, DecodeRequest
        from ..session.scheduler import MODEL_LOCK

        runner = engine.runner
        names = ", ".join(request.glossary)
        pinned = runner.encode_text(f" {names}.")[:MAX_PINNED_TOKENS] if names else []
        earlier = " ".join(translated for _, translated in request.context[-CONTEXT_SENTENCES:])
        said: list[str] = []
        for piece in pieces(request.audio):
            if cancelled is not None and cancelled():
                break
            before = " ".join([earlier, *said]).strip()
            decode = DecodeRequest(
                piece,
                language=request.source,
                task="translate",
                prompt=runner.encode_text(" " + before)[-MAX_CONTEXT_TOKENS:] if before else [],
                pinned=pinned,
                align=False,  # English words have no place in the speech's own audio
            )
            with MODEL_LOCK:  # one window: live streams decode before and after it
                (result,) = runner.decode([decode])
            text = collapse_loops(runner.decode_tokens(result.tokens))
            if before and echoes(text, before):
                # Unclear audio makes Whisper copy its prompt: hear it again without one.
                with MODEL_LOCK:
                    (result,) = runner.decode([dataclasses.replace(decode, prompt=[])])
                text = collapse_loops(runner.decode_tokens(result.tokens))
            said.append(text)
        text = tidy_text(" ".join(said), "en")
        if not text:
            raise TranslationFailedError("Whisper heard no speech in the caption's audio")
        return text

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: self._executor.shutdown(wait=True, cancel_futures=True)
        )
