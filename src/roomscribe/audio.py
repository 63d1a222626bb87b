"""The one way from any input to what the engine takes: 16 kHz mono float32 samples.

- files and uploaded bytes: `load_audio` (PyAV; uploads only in `ACCEPTED_FORMATS`, chosen
  from their first bytes by `sniff_format`);
- a compressed stream arriving in pieces (a browser's MediaRecorder WebM/Opus, Ogg, MP4):
  `StreamDecoder`;
- frames of a live track, in order (WebRTC frames from aiortc, LiveKit `AudioFrame`s, raw
  PCM s16le): `FrameConverter`.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .engine.pcm import SAMPLE_RATE

logger = logging.getLogger("roomscribe.audio")


class AudioFileError(ValueError):
    """A file or upload that is missing, empty, or not decodable audio."""


class UnsupportedFormatError(AudioFileError):
    """An upload whose container is not one of the accepted audio formats."""


class TooLongError(AudioFileError):
    """Audio longer than the limit it was loaded under."""


# Client uploads are opened only with these demuxers, chosen from the first bytes: letting
# ffmpeg probe any demuxer would let a playlist (hls, concat) make it open other files or URLs.
ACCEPTED_FORMATS = ("wav", "mp3", "m4a", "mp4", "flac", "ogg", "webm")
DEMUXERS = {"wav": "wav", "mp3": "mp3", "mp4": "mp4", "flac": "flac", "ogg": "ogg", "webm": "matroska"}


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


def load_audio(
    source: str | os.PathLike | bytes | BinaryIO,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
    name: str | None = None,
    untrusted: bool = False,
) -> np.ndarray:
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
            raise UnsupportedFormatError(
                f"{label}: not a supported audio format (accepted: {', '.join(ACCEPTED_FORMATS)})"
            )
        demuxer = DEMUXERS[kind]
    try:
        container = av.open(opener, mode="r", format=demuxer)
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise AudioFileError(f"{label}: not a decodable audio file ({_reason(exc)})") from None
    try:
        if not container.streams.audio:
            raise AudioFileError(f"{label}: contains no audio stream")
        stream = container.streams.audio[0]
        resampler = _resampler(sample_rate)
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


def _resampler(rate: int = SAMPLE_RATE):
    import av

    return av.AudioResampler(format="flt", layout="mono", rate=rate)


def _samples(frames) -> np.ndarray:
    chunks = [out.to_ndarray().reshape(-1) for out in frames]
    if not chunks:
        return np.zeros(0, np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def pcm16_to_float(data: bytes | np.ndarray) -> np.ndarray:
    """PCM s16le samples as float32 in [-1, 1]."""
    samples = np.frombuffer(data, dtype="<i2") if isinstance(data, bytes | bytearray | memoryview) else data
    return samples.astype(np.float32) / 32768.0


class FrameConverter:
    """A live track's frames, in order, as 16 kHz mono float32. One per track: resampling
    keeps state from frame to frame. Channels are averaged into one."""

    def __init__(self):
        self._resampler = None
        self._rate: int | None = None

    def pcm(self, data: bytes | memoryview | np.ndarray, sample_rate: int, channels: int = 1) -> np.ndarray:
        """Interleaved PCM s16le (a LiveKit `AudioFrame`'s data, a raw PCM chunk)."""
        if channels < 1:
            raise ValueError(f"a frame needs at least one channel, not {channels}")
        if sample_rate <= 0:
            raise ValueError(f"bad sample rate {sample_rate}")
        samples = np.frombuffer(data, dtype="<i2") if not isinstance(data, np.ndarray) else data
        if len(samples) % channels:
            raise ValueError(f"{len(samples)} samples do not split into {channels} channels")
        if channels > 1:
            mono = pcm16_to_float(samples).reshape(-1, channels).mean(axis=1, dtype=np.float32)
        else:
            mono = pcm16_to_float(samples)
        return self.mono(mono, sample_rate)

    def mono(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float32 samples at any rate."""
        if sample_rate == SAMPLE_RATE:
            return samples.astype(np.float32, copy=False)
        import av

        frame = av.AudioFrame.from_ndarray(
            samples.astype(np.float32, copy=False).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = sample_rate
        return self._resample(frame, sample_rate)

    def av_frame(self, frame) -> np.ndarray:
        """A decoded PyAV frame (what aiortc gives for a WebRTC track: 48 kHz Opus)."""
        return self._resample(frame, frame.sample_rate)

    def flush(self) -> np.ndarray:
        """What the resampler still holds at the end of the track."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        out = _samples(self._resampler.resample(None))
        self._resampler, self._rate = None, None
        return out

    def _resample(self, frame, rate: int) -> np.ndarray:
        if self._resampler is None or rate != self._rate:
            self._resampler, self._rate = _resampler(), rate
        return _samples(self._resampler.resample(frame)).copy()


class _Pipe(io.RawIOBase):
    """A read side that blocks until bytes are fed (None: end of input)."""

    def __init__(self):
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._buffer = b""
        self._eof = False

    def feed(self, data: bytes | None) -> None:
        self._chunks.put(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, target) -> int:
        while not self._buffer and not self._eof:
            chunk = self._chunks.get()
            if chunk is None:
                self._eof = True
            else:
                self._buffer = chunk
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n


class StreamDecoder:
    """Compressed audio arriving in pieces, decoded with PyAV on a thread of its own as the
    bytes come in. `feed(bytes)` from the caller; `on_audio(samples)` and finally
    `on_done(error or None)` are called on the decoding thread."""

    def __init__(self, head: bytes, on_audio: Callable[[np.ndarray], None], on_done: Callable[[str | None], None]):
        kind = sniff_format(head)
        if kind is None:
            raise ValueError(
                "not a supported audio stream (send WebM/Opus, Ogg, MP4, MP3, FLAC, WAV or raw PCM s16le 16 kHz mono)"
            )
        self._demuxer = DEMUXERS[kind]
        self._pipe = _Pipe()
        self._on_audio = on_audio
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, name="roomscribe-decode", daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        if data:
            self._pipe.feed(data)

    def end(self) -> None:
        self._pipe.feed(None)

    def _run(self) -> None:
        import av

        error = None
        try:
            with av.open(self._pipe, mode="r", format=self._demuxer) as container:
                if not container.streams.audio:
                    raise ValueError("the stream has no audio")
                resampler = _resampler()
                for frame in container.decode(container.streams.audio[0]):
                    out = _samples(resampler.resample(frame))
                    if len(out):
                        self._on_audio(out.copy())
                out = _samples(resampler.resample(None))
                if len(out):
                    self._on_audio(out.copy())
        except (av.FFmpegError, ValueError, OSError) as exc:
            error = f"could not decode the audio stream: {_reason(exc)}"
        except Exception as exc:  # noqa: BLE001 - report, never kill the server
            logger.exception("audio stream decoder failed")
            error = f"could not decode the audio stream: {type(exc).__name__}"
        finally:
            self._pipe.feed(None)
        self._on_done(error)
