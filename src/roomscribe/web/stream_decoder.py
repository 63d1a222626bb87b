"""Compressed audio arriving in pieces (a browser's MediaRecorder WebM/Opus, Ogg, MP4 ...),
decoded with PyAV on a thread of its own as the bytes come in."""

from __future__ import annotations

import io
import logging
import queue
import threading
from collections.abc import Callable

import av
import numpy as np

from ..audio import _DEMUXER, sniff_format

logger = logging.getLogger("roomscribe.web")


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
    """`feed(bytes)` from the caller; `on_audio(samples)` and finally `on_done(error or None)`
    are called on the decoding thread (16 kHz mono float32)."""

    def __init__(self, head: bytes, on_audio: Callable[[np.ndarray], None],
                 on_done: Callable[[str | None], None]):
        kind = sniff_format(head)
        if kind is None:
            raise ValueError("not a supported audio stream (send WebM/Opus, Ogg, MP4, MP3, FLAC, WAV "
                             "or raw PCM s16le 16 kHz mono)")
        self._demuxer = _DEMUXER[kind]
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
        error = None
        try:
            with av.open(self._pipe, mode="r", format=self._demuxer) as container:
                if not container.streams.audio:
                    raise ValueError("the stream has no audio")
                resampler = av.AudioResampler(format="flt", layout="mono", rate=16000)
                for frame in container.decode(container.streams.audio[0]):
                    for out in resampler.resample(frame):
                        self._on_audio(out.to_ndarray().reshape(-1).copy())
                for out in resampler.resample(None):
                    self._on_audio(out.to_ndarray().reshape(-1).copy())
        except (av.FFmpegError, ValueError, OSError) as exc:
            error = f"could not decode the audio stream: {str(exc).splitlines()[0][:160] if str(exc) else exc}"
        except Exception as exc:  # noqa: BLE001 - report, never kill the server
            logger.exception("audio stream decoder failed")
            error = f"could not decode the audio stream: {type(exc).__name__}"
        finally:
            self._pipe.feed(None)
        self._on_done(error)
