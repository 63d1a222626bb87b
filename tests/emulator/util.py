"""Small helpers shared by the emulator modules."""

from __future__ import annotations

import dataclasses
import secrets
import string
import time

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, n: int = 12) -> str:
    """A LiveKit-style id: ``PA_``, ``TR_``, ``RM_``, ``AJ_``, ``AW_``, ``AD_`` + base62."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(n))


def now_ms() -> int:
    return int(time.time() * 1000)


class Record:
    """Dataclass mixin: ``rec["field"]`` and ``rec.get("field")`` work like ``rec.field``."""

    def __getitem__(self, key: str):
        if key.startswith("_") or key not in self.keys():
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return self[key] if key in self.keys() else default

    def keys(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self) if not f.name.startswith("_")]  # type: ignore[arg-type]

    def asdict(self) -> dict:
        return {k: getattr(self, k) for k in self.keys()}
