from __future__ import annotations

import pytest

from support.voices import two_voices


@pytest.fixture(scope="session")
def mixed_track(eval_dir):
    return two_voices(eval_dir)
