"""How full this worker is, for LiveKit's load-weighted dispatch.

Every room of a worker runs in the worker's process (thread executor) on one shared
model, so load is known here exactly:

    load = max(open caption tracks / max_tracks, share of the last 5 s the model was busy,
               how far the scheduler has slowed streams down to keep lag bounded)

`max_tracks` comes from `ROOMSCRIBE_MAX_TRACKS`, or is measured when the process starts:
one batched decode of 6 s windows gives the model's cost per decode, so the number of
people who can talk at once in real time (decoding every `min_chunk` seconds of speech).
Silent and muted tracks cost no decoding, and in a meeting few talk at once, so a
worker takes `TRACKS_PER_TALKER` tracks per concurrent talker (bench/concurrency.py:
meetings of 32 participants, one or two talking at a time, stay at full speed on a
2-core machine that measures 2.5 talkers here). The busy share and the slow-down level
catch what that estimate misses: a worker that has had to slow its streams down reports
itself nearly full (level 1) or full (level 2 and up), so the server sends new rooms
to other workers while this one still keeps its lag bounded.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time

import numpy as np

from ..engine import Engine, StreamConfig
from ..engine.whisper import DecodeRequest
from ..session.scheduler import EngineWorker

logger = logging.getLogger("roomscribe.agent")

CALIBRATION_BATCH = 4
CALIBRATION_SECONDS = 6.0
TRACKS_PER_TALKER = 8
SLOWDOWN_LOAD = (0.0, 0.8, 0.95, 1.0)  # load reported at each slow-down level of the scheduler
DECODE_EVERY = StreamConfig().min_chunk_seconds  # seconds of speech between decodes of a talker


def measure_talkers(engine: Engine) -> float:
    """How many people can talk at once, in real time, on this machine and model."""
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(int(CALIBRATION_SECONDS * 16000))).astype(np.float32)
    prefix = engine.runner.encode_text(" So the plan for next week is to finish the review")
    requests = [DecodeRequest(audio=audio, language="en", prefix=list(prefix)) for _ in range(CALIBRATION_BATCH)]
    engine.runner.decode(requests[:1])  # warm-up
    started = time.perf_counter()
    engine.runner.decode(requests)
    per_decode = (time.perf_counter() - started) / CALIBRATION_BATCH
    return DECODE_EVERY / per_decode


class Capacity:
    """Open caption tracks of this process, against what it can serve."""

    def __init__(self, max_tracks: int | None = None):
        self.max_tracks = max_tracks
        self._open = 0
        self._lock = threading.Lock()
        self._calibration_lock = threading.Lock()
        self._meters: list[EngineWorker] = []

    def calibrate(self, engine: Engine) -> int:
        with self._calibration_lock:  # job threads prewarm at once; measure only once
            return self._calibrate(engine)

    def _calibrate(self, engine: Engine) -> int:
        if self.max_tracks is None:
            env = os.environ.get("ROOMSCRIBE_MAX_TRACKS")
            if env:
                self.max_tracks = max(1, int(env))
            else:
                talkers = measure_talkers(engine)
                self.max_tracks = max(1, math.floor(talkers * TRACKS_PER_TALKER))
                logger.info(
                    "measured capacity: %.1f concurrent talkers, up to %d caption tracks", talkers, self.max_tracks
                )
        return self.max_tracks

    def watch(self, worker: EngineWorker) -> None:
        """Count a scheduler's busy share and slow-down level in the load."""
        if worker not in self._meters:
            self._meters.append(worker)

    def track_opened(self) -> None:
        with self._lock:
            self._open += 1

    def track_closed(self) -> None:
        with self._lock:
            self._open = max(0, self._open - 1)

    @property
    def open_tracks(self) -> int:
        return self._open

    def load(self) -> float:
        tracks = self._open / self.max_tracks if self.max_tracks else 0.0
        busy = max((w.busy.fraction() for w in self._meters), default=0.0)
        slowdown = max(
            (SLOWDOWN_LOAD[min(w.governor.level, len(SLOWDOWN_LOAD) - 1)] for w in self._meters), default=0.0
        )
        return min(1.0, max(tracks, busy, slowdown))


PROCESS_CAPACITY = Capacity()
