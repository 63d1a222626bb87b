"""Translated captions: backends, the prompts they are given, and the process's one queue.

- `prompts`: the chat messages that translate one caption (pure).
- `backends`: the `Translator` interface, the backend a process uses (`TranslatorChoice`),
  and what each needs installed.
- `llama`: a local GGUF instruction model through llama.cpp (`roomscribe[translate]`).
- `openai_chat`: any OpenAI-compatible chat endpoint.
- `service`: the process's one queue onto its backend, shared by every room and session.

The stage that sends captions here is `session.translation.TranslationStage`.
"""

from __future__ import annotations

import logging
import threading

from .backends import (
    TRANSLATORS,
    TranslationFailedError,
    TranslationUnavailableError,
    Translator,
    TranslatorChoice,
    TranslatorName,
    load_translator,
)
from .prompts import TranslationRequest
from .service import TranslationJob, TranslationService

logger = logging.getLogger("roomscribe.translation")

__all__ = [
    "TRANSLATORS",
    "TranslationFailedError",
    "TranslationJob",
    "TranslationRequest",
    "TranslationService",
    "TranslationUnavailableError",
    "Translator",
    "TranslatorChoice",
    "TranslatorName",
    "load_translator",
    "shared_translation",
    "translation_unavailable",
]

_lock = threading.Lock()
_shared: TranslationService | None = None
_unavailable: str | None = None
_loaded = False


def shared_translation(choice: TranslatorChoice | None = None) -> TranslationService | None:
    """The process's translation queue (made on first call, from `choice` or the environment),
    or None where translation cannot run here (`translation_unavailable()` says why)."""
    global _shared, _unavailable, _loaded
    with _lock:
        if not _loaded:
            _loaded = True
            try:
                choice = choice or TranslatorChoice.from_env()
                if choice is None:
                    _unavailable = (
                        "no translator: pip install 'roomscribe[translate]' for the local model, "
                        "or set ROOMSCRIBE_TRANSLATOR_URL to an OpenAI-compatible endpoint"
                    )
                else:
                    _shared = TranslationService(load_translator(choice), timeout=choice.timeout)
                    logger.info("translation: %s (%s)", choice.name, _shared.translator.model)
            except (ValueError, TranslationUnavailableError) as exc:
                _unavailable = str(exc)
                logger.error("translation is off: %s", exc)
        return _shared


def translation_unavailable() -> str | None:
    """Why the process has no translation (None where it has)."""
    shared_translation()
    return _unavailable
