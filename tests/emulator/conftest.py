"""Fixtures for the emulator self-tests (tests/emulator/).

The network namespace must be entered before the livekit FFI starts its threads. This
conftest's ``pytest_configure`` runs when pytest loads it: at start-up for
``pytest tests/emulator``, and during collection (still before any test runs) for
``pytest tests``. The root conftest may call it earlier too; the call is idempotent.
"""

from __future__ import annotations

import logging

import pytest

from emulator import netns


def pytest_configure(config: pytest.Config) -> None:
    netns.enter_private_network()
    logging.getLogger("aioice").setLevel(logging.WARNING)  # one INFO line per ICE pair check


@pytest.fixture(scope="session")
def emulator_host() -> str:
    host = netns.enter_private_network()
    if host is None:
        pytest.skip(f"no private network namespace for WebRTC: {netns.reason}")
    return host
