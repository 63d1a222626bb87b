"""Translation backends behind one interface, and how a process picks its one backend.

- `llama` (the default where `roomscribe[translate]` is installed): a local instruction model
  run by llama.cpp (`xllamacpp`), Qwen2.5-1.5B-Instruct (Coder) GGUF from the packaged weights,
  or any GGUF given by path.
- `openai`: any OpenAI-compatible chat endpoint (vLLM, a llama.cpp server, a hosted API), the
  same prompts, with a timeout and retries.
- `whisper`: Whisper's own translation into English (`task="translate"`), a second decode of
  each final caption's audio on the speech model the process already has: no package, no
  second model, English only.

A backend is one object per process, shared by every room and session (`translation.service`
queues their work). Besides translating, it says what it needs and can do: `needs_audio` (its
requests must carry the caption's audio: the stage then sends finals only, with their audio)
and `targets` (the only languages it translates into; None: any). Settings come from the
environment, as the other backends' do: `ROOMSCRIBE_TRANSLATOR` (`llama`, `openai`, `whisper`
or `off`), `ROOMSCRIBE_TRANSLATOR_MODEL` (a GGUF path for llama, a model name for openai),
`ROOMSCRIBE_TRANSLATOR_URL` and `ROOMSCRIBE_TRANSLATOR_API_KEY` (openai),
`ROOMSCRIBE_TRANSLATOR_THREADS` (llama).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from .errors import TranslationUnavailableError
from .prompts import TranslationRequest

if TYPE_CHECKING:
    from ..engine import Engine

TranslatorName = Literal["llama", "openai", "whisper"]
TRANSLATORS: tuple[str, ...] = get_args(TranslatorName)

# backend: (modules it imports, the extra that installs them)
NEEDS = {
    "llama": (("xllamacpp",), "roomscribe[translate]"),
    "openai": ((), ""),
    "whisper": ((), ""),  # the process's speech model is all it needs
}


# Backends that translate into these languages only; known before one is made, so that a door
# can refuse other languages where they are asked for.
class Translator(Protocol):
    name: str
    model: str
    concurrency: int  # translations it runs at once
    weak_targets: dict[str, str]  # target language -> what users should know (measured weak pairs)
    needs_audio: bool  # requests must carry the caption's audio (finals only: a clause has no clean edges)
    targets: tuple[str, ...] | None  # the only languages it translates into (None: any)
    cancellable: bool  # a translation given up at the timeout stops (False: it runs to its end)

    async def prepare(self) -> None: ...  # load what the first translation would (off the loop)
    async def translate(self, request: TranslationRequest) -> str: ...
    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class TranslatorChoice:
    name: TranslatorName
    model: str | None = None  # a GGUF path (llama) or a model name (openai)
    url: str | None = None  # openai: the endpoint's base URL, e.g. http://gpu-box:8000/v1
    api_key: str | None = None
    threads: int | None = None  # llama: CPU threads (default: half the cores)
    timeout: float = 20.0  # seconds one translation may take before it is given up

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TranslatorChoice | None:
        """The process's backend, or None where translation is off or cannot run here."""
        env = os.environ if environ is None else environ
        name = chosen_name(env)
        if name == "off":
            return None
        if not name:
            if env.get("ROOMSCRIBE_TRANSLATOR_URL"):
                name = "openai"
            elif not missing_packages("llama"):
                name = "llama"
            else:
                return None
        if name not in TRANSLATORS:
            known = ", ".join(TRANSLATORS)
            raise ValueError(f"ROOMSCRIBE_TRANSLATOR: unknown translator {name!r} (use {known} or off)")
        threads = env.get("ROOMSCRIBE_TRANSLATOR_THREADS")
        timeout = env.get("ROOMSCRIBE_TRANSLATOR_TIMEOUT")
        try:
            return cls(
                name=name,  # type: ignore[arg-type]
                model=env.get("ROOMSCRIBE_TRANSLATOR_MODEL") or None,
                url=env.get("ROOMSCRIBE_TRANSLATOR_URL") or None,
                api_key=env.get("ROOMSCRIBE_TRANSLATOR_API_KEY") or None,
                threads=int(threads) if threads else None,
                timeout=float(timeout) if timeout else 20.0,
            )
        except ValueError:
            raise ValueError(
                "ROOMSCRIBE_TRANSLATOR_THREADS must be a whole number and ROOMSCRIBE_TRANSLATOR_TIMEOUT seconds"
            ) from None


def chosen_name(environ: Mapping[str, str] | None = None) -> str:
    """`ROOMSCRIBE_TRANSLATOR` as given ("" where it is not: the default applies)."""
    env = os.environ if environ is None else environ
    return (env.get("ROOMSCRIBE_TRANSLATOR") or "").strip().lower()


def missing_packages(name: str) -> list[str]:
    modules, _ = NEEDS[name]
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_packages(name: str) -> None:
    missing = missing_packages(name)
    if missing:
        raise TranslationUnavailableError(
            f"translation with {name} needs {', '.join(missing)}: pip install '{NEEDS[name][1]}'"
        )


def load_translator(choice: TranslatorChoice, engine: Engine | None = None) -> Translator:
    """The backend a choice names (its model loads on first use, off the event loop). `whisper`
    translates on `engine`, or, without one, on the engine the process's scheduler drives,
    found at its first translation: never a model of its own."""
    require_packages(choice.name)
    if choice.name == "whisper":
        from .whisper import WhisperTranslator

        return WhisperTranslator(engine)
    if choice.name == "llama":
        from .llama import LlamaTranslator

        return LlamaTranslator(choice.model, threads=choice.threads)
    from .openai_chat import OpenAIChatTranslator

    if not choice.url:
        raise TranslationUnavailableError("the openai translator needs ROOMSCRIBE_TRANSLATOR_URL (its base URL)")
    return OpenAIChatTranslator(choice.url, model=choice.model, api_key=choice.api_key, timeout=choice.timeout)
