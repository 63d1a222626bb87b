"""Checks on audio handed to a stream: 16 kHz mono, float in [-1, 1] or int16."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000  # what the engine takes, and so what every door converts its audio to


class InputError(ValueError):
    """Audio that the engine cannot take (wrong shape, rate or values)."""


def validate_pcm(audio, sample_rate: int) -> np.ndarray:
    if sample_rate != SAMPLE_RATE:
        raise InputError(f"audio must be {SAMPLE_RATE} Hz mono; got {sample_rate} Hz (resample first)")
    try:
        arr = np.asarray(audio)
    except Exception as exc:  # noqa: BLE001 - anything unconvertible is bad input
        raise InputError(f"audio is not an array: {exc}") from None
    if arr.dtype != np.int16 and arr.dtype.kind != "f":
        raise InputError(f"audio must be float32 in [-1, 1] or int16 PCM; got {arr.dtype}")
    if arr.ndim == 2 and 1 in arr.shape:
        arr = arr.reshape(-1)
    if arr.ndim != 1:
        raise InputError(f"audio must be mono (1-D); got shape {arr.shape}")
    if arr.dtype == np.int16:
        return arr.astype(np.float32) / 32768.0
    arr = arr.astype(np.float32, copy=False)
    if len(arr) and not np.isfinite(arr).all():
        raise InputError("audio contains NaN or infinite samples")
    return arr
