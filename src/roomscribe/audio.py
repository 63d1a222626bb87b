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


class UnsupportedFormatError(AudioFileError):
    """An upload whose container is not one of the accepted audio formats."""


class TooLongError(AudioFileError):
    """Audio longer than the limit it was loaded under."""


# Client uploads are opened only with these demuxers, chosen from the first bytes: letting
# ffmpeg probe any demuxer would let a playlist (hls, concat) make it open other files or URLs.
ACCEPTED_FORMATS = ("wav", "mp3", "m4a", "mp4", "flac", "ogg", "webm")
_DEMUXER = {"wav": "wav", "mp3": "mp3", "mp4": "mp4", "flac": "flac", "ogg": "ogg", "webm": "matroska"}


def sniff_format(head: bytes, frame_sync: bool = True) -> str | None:
    """The container of an upload from its first bytes (None: not an accepted format).
    `frame_sync=False` leaves out bare MP3 frames, whose 11-bit sync word raw PCM can start
    with too (a sample of -1 is FF FF)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head[:4] == b"fLaC":
        return "flac"
    if head[:4] == b"OggS":
        return "ogg"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"  # EBML: WebM or Matroska
    if head[4:8] == b"ftyp":
        return "mp4"  # MP4, M4A, MOV
    if head[:3] == b"ID3" or (frame_sync and len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    return None


def load_audio(source: str | os.PathLike | bytes | BinaryIO, sample_rate: int = SAMPLE_RATE,
               max_seconds: float | None = None, name: str | None = None,
               untrusted: bool = False) -> np.ndarray:
    """Decode an audio/video file to mono float32 samples. A local path may be any container
    ffmpeg reads; `untrusted` bytes (uploads) only one of `ACCEPTED_FORMATS`."""
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
    demuxer = None
    if untrusted:
        if isinstance(opener, str):
            raise AudioFileError(f"{label}: untrusted audio must come as bytes, not a path")
        head = opener.read(16)
        opener.seek(0)
        kind = sniff_format(head)
        if kind is None:
            raise UnsupportedFormatError(f"{label}: not a supported audio format "
                                         f"(accepted: {', '.join(ACCEPTED_FORMATS)})")
        demuxer = _DEMUXER[kind]
    try:
        container = av.open(opener, mode="r", format=demuxer)
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
                    raise TooLongError(f"{label}: longer than the {max_seconds:g} s limit")
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except TooLongError:
            raise
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
