"""Audio and language conversions between LiveKit and the engine."""

from __future__ import annotations

import numpy as np

from livekit import rtc
from livekit.agents import LanguageCode
from livekit.agents.utils import AudioBuffer

SAMPLE_RATE = 16000  # what the engine takes: 16 kHz mono


def whisper_language(language: str | None) -> str | None:
    """Whisper takes base codes ("en-US" → "en"); None or "multi" means detect."""
    if not language or language == "multi":
        return None
    return LanguageCode(language).language or None


def mono_frame(frame: rtc.AudioFrame) -> rtc.AudioFrame:
    if frame.num_channels < 1:
        raise ValueError(f"frame has {frame.num_channels} channels")
    if frame.num_channels == 1:
        return frame
    samples = np.frombuffer(frame.data, dtype=np.int16)
    if len(samples) != frame.samples_per_channel * frame.num_channels:
        raise ValueError("frame data does not match its channel count")
    mono = samples.reshape(-1, frame.num_channels).mean(axis=1).round().astype(np.int16)
    return rtc.AudioFrame(mono.tobytes(), frame.sample_rate, 1, frame.samples_per_channel)


def frames_to_pcm(buffer: AudioBuffer) -> np.ndarray:
    """An AudioBuffer as 16 kHz mono float32 (what the engine takes)."""
    frames = [f for f in (buffer if isinstance(buffer, list) else [buffer]) if f.samples_per_channel]
    if not frames:
        return np.zeros(0, dtype=np.float32)
    frame = mono_frame(rtc.combine_audio_frames(frames))
    if frame.sample_rate != SAMPLE_RATE:
        resampler = rtc.AudioResampler(frame.sample_rate, SAMPLE_RATE, num_channels=1,
                                       quality=rtc.AudioResamplerQuality.HIGH)
        out = resampler.push(frame) + resampler.flush()
        pcm = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in out]) if out else np.zeros(0, np.int16)
    else:
        pcm = np.frombuffer(frame.data, dtype=np.int16)
    return pcm.astype(np.float32) / 32768.0
