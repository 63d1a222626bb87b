from __future__ import annotations

import pytest

from support.voices import two_voices


@pytest.fixture(scope="session")
def diarization_extra():
    from roomscribe.diarization.encoder import missing_packages

    missing = missing_packages()
    if missing:
        pytest.skip(f"the diarization extra is not installed ({', '.join(missing)}): pip install -e '.[diarization]'")


@pytest.fixture(scope="session")
def mixed_track(eval_dir):
    return two_voices(eval_dir)
