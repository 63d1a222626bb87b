"""A growable audio buffer with cheap appends and drops from the front."""

from __future__ import annotations

import numpy as np

from .pcm import SAMPLE_RATE


class AudioWindow:
    def __init__(self, capacity_samples: int = SAMPLE_RATE * 16):
        self._buf = np.zeros(max(1024, capacity_samples), dtype=np.float32)
        self._begin = 0
        self._end = 0
        self.start_sample = 0  # position of the first held sample on the stream clock

    def __len__(self) -> int:
        return self._end - self._begin

    @property
    def end_sample(self) -> int:
        return self.start_sample + len(self)

    def append(self, audio: np.ndarray) -> None:
        n = len(audio)
        if self._end + n > len(self._buf):
            held = self._buf[self._begin : self._end].copy()
            size = len(self._buf)
            while len(held) + n > size:
                size *= 2
            if size != len(self._buf):
                self._buf = np.zeros(size, dtype=np.float32)
            self._buf[: len(held)] = held
            self._begin, self._end = 0, len(held)
        self._buf[self._end : self._end + n] = audio
        self._end += n

    def drop_front(self, n: int) -> None:
        n = max(0, min(n, len(self)))
        self._begin += n
        self.start_sample += n

    def view(self) -> np.ndarray:
        return self._buf[self._begin : self._end]

    def copy(self) -> np.ndarray:
        return self.view().copy()

    def clear(self, start_sample: int) -> None:
        self._begin = self._end = 0
        self.start_sample = start_sample
