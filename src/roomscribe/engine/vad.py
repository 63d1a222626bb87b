"""Silero VAD on onnxruntime: one shared session, per-stream state.

The Silero v6 ONNX model takes 512-sample chunks at 16 kHz with 64 samples of
context and carries its LSTM state (h, c) between calls, so a stream's state is
three small arrays.
"""

from __future__ import annotations

import importlib.util
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .pcm import SAMPLE_RATE

CHUNK = 512
CONTEXT = 64
HISTORY_CHUNKS = 1024  # about 33 s of probabilities


class VadModelNotFoundError(RuntimeError):
    pass


def default_vad_path() -> Path:
    """The Silero ONNX file shipped with faster-whisper (or the silero-vad package)."""
    for module, rel in (("faster_whisper", "assets/silero_vad_v6.onnx"), ("silero_vad", "data/silero_vad.onnx")):
        spec = importlib.util.find_spec(module)
        if spec and spec.origin:
            path = Path(spec.origin).parent / rel
            if path.is_file():
                return path
    raise VadModelNotFoundError("Silero VAD weights not found: pip install faster-whisper")


class SileroVAD:
    """The shared ONNX session. Thread-safe; holds no per-stream state."""

    def __init__(self, path: str | Path | None = None):
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 4
        self.path = Path(path) if path else default_vad_path()
        self.session = onnxruntime.InferenceSession(
            str(self.path), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self._lock = threading.Lock()

    def new_state(self) -> VadState:
        return VadState()

    def probabilities(self, state: VadState, chunks: np.ndarray) -> np.ndarray:
        """Speech probability per 512-sample chunk (shape [n, 512]); advances `state`."""
        if len(chunks) == 0:
            return np.zeros(0, dtype=np.float32)
        context = np.concatenate([state.context[None, :], chunks[:-1, -CONTEXT:]], axis=0)
        batch = np.concatenate([context, chunks], axis=1).astype(np.float32, copy=False)
        out, state.h, state.c = self.session.run(None, {"input": batch, "h": state.h, "c": state.c})
        state.context = chunks[-1, -CONTEXT:].copy()
        return np.asarray(out, dtype=np.float32).reshape(-1)


@dataclass
class VadState:
    h: np.ndarray = None  # type: ignore[assignment]
    c: np.ndarray = None  # type: ignore[assignment]
    context: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self):
        self.h = np.zeros((1, 1, 128), dtype=np.float32)
        self.c = np.zeros((1, 1, 128), dtype=np.float32)
        self.context = np.zeros(CONTEXT, dtype=np.float32)


@dataclass
class VadConfig:
    threshold: float = 0.5
    neg_threshold: float | None = None  # default: threshold - 0.15
    min_silence_seconds: float = 0.5  # silence that ends an utterance
    min_speech_seconds: float = 0.25  # shorter bursts are dropped
    pad_seconds: float = 0.2  # audio kept after speech end
    start_pad_seconds: float = 0.3  # audio kept before speech start: Silero fires late on plosives


@dataclass
class VadEvent:
    kind: str  # "start" | "end"
    sample: int  # on the stream's audio clock
    speech_samples: int = 0  # for "end": how much speech the utterance held


class VadStream:
    """Per-stream speech/silence tracker with hysteresis, fed any number of samples at a time."""

    def __init__(self, model: SileroVAD, config: VadConfig | None = None):
        self.model = model
        self.config = config or VadConfig()
        self.state = model.new_state()
        self._pending = np.zeros(0, dtype=np.float32)
        self._processed = 0  # samples consumed by the model
        self.in_speech = False
        self._speech_start = 0
        self._last_speech_end = 0
        self._speech_samples = 0
        # Recent speech probabilities (one per chunk), to find pauses for window cuts.
        self._history = np.zeros(HISTORY_CHUNKS, dtype=np.float32)
        self._history_end = 0  # chunk index one past the newest entry

    @property
    def neg_threshold(self) -> float:
        c = self.config
        return c.neg_threshold if c.neg_threshold is not None else max(0.01, c.threshold - 0.15)

    def push(self, audio: np.ndarray) -> list[VadEvent]:
        buf = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        n = len(buf) // CHUNK
        self._pending = buf[n * CHUNK :].copy()
        if n == 0:
            return []
        probs = self.model.probabilities(self.state, buf[: n * CHUNK].reshape(n, CHUNK))
        return self._track(probs)

    def _track(self, probs: np.ndarray) -> list[VadEvent]:
        cfg = self.config
        pad = int(cfg.pad_seconds * SAMPLE_RATE)
        min_silence = int(cfg.min_silence_seconds * SAMPLE_RATE)
        events: list[VadEvent] = []
        for p in probs:
            self._history[self._history_end % HISTORY_CHUNKS] = p
            self._history_end += 1
            begin = self._processed
            self._processed += CHUNK
            if p >= cfg.threshold:
                if not self.in_speech:
                    self.in_speech = True
                    self._speech_start = max(0, begin - int(cfg.start_pad_seconds * SAMPLE_RATE))
                    self._speech_samples = 0
                    events.append(VadEvent("start", self._speech_start))
                self._last_speech_end = self._processed
                self._speech_samples += CHUNK
            elif self.in_speech:
                if p >= self.neg_threshold:
                    self._speech_samples += CHUNK
                    self._last_speech_end = self._processed
                elif self._processed - self._last_speech_end >= min_silence:
                    self.in_speech = False
                    events.append(VadEvent("end", self._last_speech_end + pad, self._speech_samples))
        return events

    def finish(self) -> list[VadEvent]:
        """End of input: close an open utterance."""
        if self.in_speech:
            self.in_speech = False
            return [VadEvent("end", self._processed + len(self._pending), self._speech_samples)]
        return []

    def quietest_sample(self, lo: int, hi: int) -> tuple[int, float] | None:
        """The middle of the least speech-like chunk in [lo, hi) samples, with its probability."""
        first = max(lo // CHUNK, self._history_end - HISTORY_CHUNKS, 0)
        last = min(-(-hi // CHUNK), self._history_end)
        if last <= first:
            return None
        idx = np.arange(first, last)
        probs = self._history[idx % HISTORY_CHUNKS]
        best = int(np.argmin(probs))
        return int(idx[best] * CHUNK + CHUNK // 2), float(probs[best])

    def quiet_point(self, lo: int, hi: int, fallback: int) -> int:
        """The least speech-like sample in [lo, hi), or `fallback` where none there is quiet
        (a word that follows at once)."""
        quiet = self.quietest_sample(lo, hi) if hi > lo else None
        return quiet[0] if quiet is not None and quiet[1] < self.config.threshold else fallback

    def speech_seconds(self, lo: int, hi: int) -> float:
        """Seconds of [lo, hi) samples heard as speech, of what the history still holds."""
        first = max(-(-lo // CHUNK), self._history_end - HISTORY_CHUNKS, 0)
        last = min(hi // CHUNK, self._history_end)
        if last <= first:
            return 0.0
        probs = self._history[np.arange(first, last) % HISTORY_CHUNKS]
        return float(np.count_nonzero(probs >= self.config.threshold)) * CHUNK / SAMPLE_RATE

    def holds(self, lo: int, hi: int) -> bool:
        """Whether the history still holds the probabilities of [lo, hi) samples."""
        return lo // CHUNK >= max(self._history_end - HISTORY_CHUNKS, 0) and -(-hi // CHUNK) <= self._history_end

    @property
    def processed_samples(self) -> int:
        return self._processed
