"""Decode audio files and bytes to 16 kHz mono float32 with PyAV."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import BinaryIO

import numpy as np

SAMPLE_RATE = 16000


class AudioFileError(ValueError):
    """A file or upload that is missing, empty, or not decodable audio."""


def load_audio(source: str | os.PathLike | bytes | BinaryIO, sample_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None, name: str | None = None) -> np.ndarray:
    """Decode any audio/video container ffmpeg can read; returns mono float32 samples."""
    import av

    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else "upload")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise AudioFileError(f"{label}: no such file")
        if not path.is_file():
            raise AudioFileError(f"{label}: not a regular file")
        if path.stat().st_size == 0:
            raise AudioFileError(f"{label}: file is empty")
        opener = str(path)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioFileError(f"{label}: file is empty")
        opener = io.BytesIO(bytes(source))
    else:
        opener = source
    try:
        container = av.open(opener, mode="r")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioFileError(f"{label}: not a decodable audio file ({_reason(exc)})") from None
    try:
        if not container.streams.audio:
            raise AudioFileError(f"{label}: contains no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        total = 0
        limit = int(max_seconds * sample_rate) if max_seconds else None
        try:
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunk = out.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if limit is not None and total > limit:
                    raise AudioFileError(f"{label}: longer than the {max_seconds:g} s limit")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except (av.FFmpegError, ValueError) as exc:
            raise AudioFileError(f"{label}: corrupt audio ({_reason(exc)})") from None
    finally:
        container.close()
    audio = np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32)
    if len(audio) == 0:
        raise AudioFileError(f"{label}: contains no audio samples")
    if not np.isfinite(audio).all():
        raise AudioFileError(f"{label}: audio contains invalid samples")
    return audio


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]
