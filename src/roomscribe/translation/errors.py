"""What every translation backend shares: its two errors, and which backends translate into
some languages only (its own module, so that the backends and the module that picks one do
not import each other)."""

from __future__ import annotations

from collections.abc import Iterable

from .prompts import language_name

# Backends that translate into these languages only (checked where languages are set, before
# the backend exists).
ONLY_TARGETS: dict[str, tuple[str, ...]] = {"whisper": ("en",)}


class TranslationUnavailableError(RuntimeError):
    """Translation was asked for where no backend can run (named in the message)."""


class TranslationFailedError(RuntimeError):
    """One translation failed (the backend's error, or a reply with no text)."""


def targets_refusal(name: str, targets: tuple[str, ...] | None, asked: Iterable[str]) -> str | None:
    """Why a backend that translates into `targets` only cannot have `asked` (None: it can)."""
    refused = [t for t in asked if targets is not None and t not in targets]
    if not refused:
        return None
    only = " or ".join(f"{language_name(t)} ({t})" for t in targets or ())
    return (
        f"the {name} translator only translates into {only}, not {', '.join(refused)}; "
        "set ROOMSCRIBE_TRANSLATOR=llama (a local model) or openai (an endpoint) to translate into other languages"
    )
