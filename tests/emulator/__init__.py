"""A test-only LiveKit protocol emulator (see README.md).

Under pytest this package is imported as ``emulator`` (``tests/`` is on sys.path and has
no ``__init__.py``); ``tests.emulator`` works when the repo root is on sys.path.

Imports are lazy so that ``tests.emulator.netns`` can be imported (and the network
namespace entered) before aiortc/livekit are loaded.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Emulator", "Speaker", "Recorder", "enter_private_network"]


def __getattr__(name: str) -> Any:
    if name == "Emulator":
        from .server import Emulator

        return Emulator
    if name == "Speaker":
        from .room import Speaker

        return Speaker
    if name == "Recorder":
        from .recorder import Recorder

        return Recorder
    if name == "enter_private_network":
        from .netns import enter_private_network

        return enter_private_network
    raise AttributeError(name)
