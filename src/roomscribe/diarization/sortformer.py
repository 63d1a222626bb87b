"""NVIDIA's streaming Sortformer through NeMo: who speaks, frame by frame (80 ms), up to four.

Sortformer reads a track in chunks and carries a speaker cache and a FIFO of past frames from
chunk to chunk, so a voice keeps its index (0..3, in order of arrival) for the life of the
stream. This module is the glue between the engine's streams and NeMo's streaming step:

- A track's speech (what the VAD found) is laid end to end on the track's *Sortformer clock*,
  with `GAP_SECONDS` of silence between utterances so the model hears where one ended.
  `_pieces` maps that clock back to the track's.
- Features (the model's own preprocessor) are computed per chunk from the audio around it,
  and a chunk runs once its right context has arrived; an utterance's end, or words that need
  a label now, run what is left. A frame's features only use audio that has arrived, so
  running early changes no later frame.
- Each chunk's predictions (a probability per speaker per 80 ms frame) are kept for
  `KEEP_SECONDS`; a word takes the speaker most active over its frames.

One model per process (`SortformerDiarizer`), model calls serialised; a track is state only.
Needs `roomscribe[sortformer]` (nemo_toolkit, torch).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.clusters import SpeakerHints
from ..engine.pcm import SAMPLE_RATE
from ..engine.speakers import SpeakerNames
from .extras import DiarizationUnavailableError, check_hints, require_packages
from .files import SpeakerTurn, speech_regions

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "nvidia/diar_streaming_sortformer_4spk-v2.1"
HOP = 160  # samples per feature frame (10 ms)
WINDOW = 512  # samples under one feature frame
GAP_SECONDS = 0.4
# Per-feature normalisation sees this much speech before a chunk, as it would a whole file.
FEATURE_CONTEXT_SECONDS = 8.0
KEEP_SECONDS = 120.0
MARGIN = 3  # feature frames computed either side of a chunk and dropped (framing, pre-emphasis)


@dataclass(frozen=True)
class Streaming:
    """Sortformer's streaming settings, in 80 ms frames (NeMo's names)."""

    chunk_len: int
    chunk_right_context: int
    fifo_len: int
    spkcache_update_period: int
    spkcache_len: int = 188
    chunk_left_context: int = 1


# The model card's settings: live captions take the 1.04 s one; a whole file the 30.4 s one.
LIVE = Streaming(chunk_len=6, chunk_right_context=7, fifo_len=188, spkcache_update_period=144)
FILE = Streaming(chunk_len=340, chunk_right_context=40, fifo_len=40, spkcache_update_period=300)


class SortformerDiarizer:
    """One Sortformer for the process; `track` gives each diarized stream its state."""

    def __init__(self, model, live: Streaming = LIVE, file: Streaming = FILE):
        import torch

        self._torch = torch
        self.model = model.eval()
        if self.model.device.type == "cpu":
            logger.warning(
                "the sortformer diarizer runs on CPU here: it needs about 3 cores per live track "
                "(bench/diarization.py --parts sortformer); a GPU is what it is made for"
            )
        self.model.streaming_mode = True
        self.model.async_streaming = True  # tracks' caches fill at their own pace
        self.live = live
        self.file = file
        self.subsampling = int(self.model.sortformer_modules.subsampling_factor)
        self.speakers = int(self.model.sortformer_modules.n_spk)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, source: str | None = None) -> SortformerDiarizer:
        """From a .nemo file, or by hub name where a network exists."""
        require_packages("sortformer")
        from nemo.collections.asr.models import SortformerEncLabelModel
        from nemo.utils import logging as nemo_logging

        nemo_logging.setLevel(logging.WARNING)  # NeMo logs INFO to stdout, where transcripts go
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        source = source or DEFAULT_MODEL
        path = Path(source).expanduser()
        if path.suffix == ".nemo" or path.exists():
            if not path.is_file():
                raise DiarizationUnavailableError(f"no Sortformer model file at {path}")
            model = SortformerEncLabelModel.restore_from(str(path), map_location=device)
        else:
            try:
                model = SortformerEncLabelModel.from_pretrained(source, map_location=device)
            except Exception as exc:  # noqa: BLE001 - hub, network and format errors alike
                raise DiarizationUnavailableError(
                    f"cannot load the Sortformer model {source!r} ({exc}); give a .nemo file with "
                    "--diarizer-model or ROOMSCRIBE_DIARIZER_MODEL"
                ) from None
        return cls(model)

    def track(self, hints: SpeakerHints | None = None, streaming: Streaming | None = None) -> SortformerTrack:
        return SortformerTrack(self, hints or SpeakerHints(), streaming or self.live)

    def work(self, tracks: list[SortformerTrack]) -> None:
        for track in tracks:
            track.advance()

    def diarize(self, audio: np.ndarray, vad, hints: SpeakerHints | None = None) -> FrameDiarization:
        """A whole recording, streamed through with the long-chunk settings."""
        track = self.track(hints, self.file)
        regions = speech_regions(audio, vad)
        for lo, hi in regions:
            track.speech(lo, audio[lo:hi])
            track.pause()
        track.advance()
        return FrameDiarization(track, regions)

    # -- the model, for tracks ---------------------------------------------------
    def new_state(self, streaming: Streaming):
        with self._lock:
            self._configure(streaming)
            return self.model.sortformer_modules.init_streaming_state(
                batch_size=1, async_streaming=True, device=self.model.device
            )

    def step(self, streaming: Streaming, state, audio: np.ndarray, first: int, lo: int, hi: int, left: int, right: int):
        """One chunk: feature frames [lo, hi) of the track, with `left`/`right` frames of
        context, from `audio` (which starts at feature frame `first`). Returns the new state
        and the chunk's speaker probabilities [frames, speakers]."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            self._configure(streaming)
            device = self.model.device
            signal = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None].to(device)
            length = torch.tensor([signal.shape[1]], device=device)
            feats, _ = self.model.preprocessor(input_signal=signal, length=length)
            a, b = lo - left - first, hi + right - first
            chunk = feats[:, :, a:b].transpose(1, 2)
            state, preds = self.model.forward_streaming_step(
                processed_signal=chunk,
                processed_signal_length=torch.tensor([b - a], device=device),
                streaming_state=state,
                total_preds=torch.zeros((1, 0, self.speakers), device=device),
                left_offset=left,
                right_offset=right,
            )
        return state, preds[0].float().cpu().numpy()

    def _configure(self, streaming: Streaming) -> None:
        modules = self.model.sortformer_modules
        for name, value in vars(streaming).items():
            setattr(modules, name, value)


@dataclass
class _Chunk:
    first: int  # feature frame of its first prediction
    probs: np.ndarray  # [frames, speakers]


class SortformerTrack:
    """One diarized stream's Sortformer state: its audio, streaming cache, predictions."""

    def __init__(self, owner: SortformerDiarizer, hints: SpeakerHints, streaming: Streaming):
        check_hints("sortformer", hints)
        self._owner = owner
        self._streaming = streaming
        self._cap = min(hints.cap, owner.speakers)  # arrival order: the first `cap` voices
        self._state = None
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # Sortformer-clock sample of _audio[0]
        self._received = 0  # Sortformer-clock samples so far
        self._done = 0  # feature frames run through the model
        self._ends = False  # the audio so far ends an utterance: run it all
        self._pieces: deque[list[int]] = deque()  # [clock start, track start, length]
        self._track_end: int | None = None
        self._chunks: deque[_Chunk] = deque()
        self._names = SpeakerNames()

    @property
    def frames_per_prediction(self) -> int:
        return self._owner.subsampling

    # -- input from the stream --------------------------------------------------
    def speech(self, start_sample: int, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        if len(samples) == 0:
            return
        if self._track_end is None or start_sample != self._track_end or self._ends:
            if self._received:
                step = HOP * self._owner.subsampling  # next utterance on a prediction boundary
                gap = int(GAP_SECONDS * SAMPLE_RATE)
                gap += -(self._received + gap) % step
                self._append(np.zeros(gap, dtype=np.float32))
            self._pieces.append([self._received, start_sample, 0])
            self._ends = False
        self._pieces[-1][2] += len(samples)
        self._append(samples)
        self._track_end = start_sample + len(samples)

    def _append(self, samples: np.ndarray) -> None:
        self._audio = np.concatenate([self._audio, samples])
        self._received += len(samples)

    def pause(self) -> None:
        self._ends = True

    # -- running the model ------------------------------------------------------
    def advance(self, until_frame: int | None = None) -> None:
        """Run every chunk whose right context has arrived; at an utterance's end, or up to
        `until_frame` when words need it, also what is left."""
        s = self._streaming
        sub = self._owner.subsampling
        size, right_ctx, left_ctx = s.chunk_len * sub, s.chunk_right_context * sub, s.chunk_left_context * sub
        # Frames whose whole window (n_fft = 512 samples, centred) has arrived.
        ready = min((self._received - WINDOW // 2) // HOP + 1, self._received // HOP) if self._received >= WINDOW else 0
        total = self._received // HOP if self._ends else ready
        while self._done < total:
            lo = self._done
            hi = min(lo + size, total)
            right = min(right_ctx, total - hi)
            whole = hi - lo == size and (right == right_ctx or self._ends)
            wanted = self._ends or (until_frame is not None and until_frame > lo)
            if not whole and not wanted:
                break
            self._run(lo, hi, min(left_ctx, lo), right)
        self._forget()

    def _run(self, lo: int, hi: int, left: int, right: int) -> None:
        if self._state is None:
            self._state = self._owner.new_state(self._streaming)
        context = int(FEATURE_CONTEXT_SECONDS * SAMPLE_RATE) // HOP
        first = max(0, lo - left - max(MARGIN, context))
        end = min(self._received, (hi + right + MARGIN) * HOP)
        audio = self._audio[first * HOP - self._audio_start : end - self._audio_start]
        self._state, probs = self._owner.step(self._streaming, self._state, audio, first, lo, hi, left, right)
        self._chunks.append(_Chunk(lo, probs))
        self._done = hi

    def _forget(self) -> None:
        """Keep the audio the next chunk's context needs and `KEEP_SECONDS` of predictions."""
        context = int(FEATURE_CONTEXT_SECONDS * SAMPLE_RATE) // HOP
        sub = self._owner.subsampling
        keep_from = max(0, self._done - self._streaming.chunk_left_context * sub - max(MARGIN, context)) * HOP
        if keep_from > self._audio_start:
            self._audio = self._audio[keep_from - self._audio_start :]
            self._audio_start = keep_from
        horizon = self._done - int(KEEP_SECONDS * SAMPLE_RATE) // HOP
        while self._chunks and self._chunks[0].first + len(self._chunks[0].probs) * sub < horizon:
            self._chunks.popleft()
        clock_horizon = horizon * HOP
        while len(self._pieces) > 1 and self._pieces[0][0] + self._pieces[0][2] < clock_horizon:
            self._pieces.popleft()

    def catch_up(self, until: float) -> None:
        frame = self._clock(until * SAMPLE_RATE) // HOP
        if frame >= self._done:
            self.advance(until_frame=frame + 1)

    # -- labels -----------------------------------------------------------------
    @property
    def has_labels(self) -> bool:
        return bool(self._chunks)

    def _clock(self, track_sample: float) -> int:
        """A track sample on the Sortformer clock (clamped to the nearest speech kept)."""
        best, best_distance = 0, None
        for clock, start, length in self._pieces:
            offset = min(max(track_sample - start, 0), length)
            distance = abs(track_sample - start - offset)
            if best_distance is None or distance < best_distance:
                best, best_distance = clock + int(offset), distance
        return best

    def probabilities(self, start: float, end: float) -> np.ndarray | None:
        """Each speaker's mean activity over a stretch of the track (seconds)."""
        if not self._chunks:
            return None
        sub = self._owner.subsampling
        lo, hi = self._clock(start * SAMPLE_RATE) // HOP, self._clock(end * SAMPLE_RATE) // HOP
        rows = []
        for chunk in self._chunks:
            a = max(0, (lo - chunk.first) // sub)
            b = min(len(chunk.probs), (hi - chunk.first) // sub + 1)
            if a < b:
                rows.append(chunk.probs[a:b])
        if not rows:  # not run yet: the nearest frame run
            nearest = min(
                ((c, i) for c in self._chunks for i in (0, len(c.probs) - 1)),
                key=lambda ci: abs(ci[0].first + ci[1] * sub - lo),
            )
            rows = [nearest[0].probs[nearest[1] : nearest[1] + 1]]
        return np.concatenate(rows).mean(axis=0)

    def label_at(self, start: float, end: float) -> int | None:
        probs = self.probabilities(start, end)
        if probs is None:
            return None
        return int(np.argmax(probs[: self._cap]))  # a word was said: someone said it

    def speaker_at(self, start: float, end: float) -> str | None:
        label = self.label_at(start, end)
        return None if label is None else self._names(label)


class FrameDiarization:
    """A recording's speakers from a Sortformer track run over all of it."""

    def __init__(self, track: SortformerTrack, regions: list[tuple[int, int]]):
        self._track = track
        self._turns: list[SpeakerTurn] = []
        step = HOP * track.frames_per_prediction / SAMPLE_RATE
        for lo, hi in regions:  # in time order, so names go S1, S2, ... as voices appear
            t, end = lo / SAMPLE_RATE, hi / SAMPLE_RATE
            while t < end:
                upto = min(end, t + step)
                speaker = track.speaker_at(t, upto)
                last = self._turns[-1] if self._turns else None
                if last is not None and last.speaker == speaker and abs(last.end - t) < 1e-6:
                    last.end = upto
                elif speaker is not None:
                    self._turns.append(SpeakerTurn(t, upto, speaker))
                t = upto

    @property
    def speakers(self) -> list[str]:
        return sorted({t.speaker for t in self._turns}, key=lambda s: int(s[1:]))

    def speaker_at(self, seconds: float) -> str | None:
        if not self._turns:
            return None
        return min(self._turns, key=lambda t: max(t.start - seconds, seconds - t.end, 0.0)).speaker

    def turns(self) -> list[SpeakerTurn]:
        return list(self._turns)
