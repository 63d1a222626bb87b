"""Audio as the LiveKit SDK hands it out: 10 ms int16 frames at 48 kHz."""

from __future__ import annotations

import numpy as np

from livekit import rtc

FRAME_48K = 480  # 10 ms at 48 kHz, what a LiveKit AudioStream hands out


def frames_48k(audio16: np.ndarray, channels: int = 1) -> list[rtc.AudioFrame]:
    """16 kHz float audio as 10 ms int16 frames at 48 kHz (linear upsampling is enough here)."""
    n = len(audio16) * 3
    up = np.interp(np.arange(n) / 3.0, np.arange(len(audio16)), audio16)
    pcm = np.clip(up * 32768.0, -32768, 32767).astype(np.int16)
    pcm = pcm[: len(pcm) // FRAME_48K * FRAME_48K]
    frames = []
    for i in range(0, len(pcm), FRAME_48K):
        chunk = np.repeat(pcm[i : i + FRAME_48K], channels) if channels > 1 else pcm[i : i + FRAME_48K]
        frames.append(rtc.AudioFrame(chunk.tobytes(), 48000, channels, FRAME_48K))
    return frames
