"""Who is speaking on one track, as it plays.

`SpeakerBackend` and `TrackSpeakers` are what the engine and its streams ask of any
diarization backend (one per process; a track is state). `TrackDiarizer` is the default
backend's track: windows of speech, their embeddings, labels.

The stream hands over the speech its VAD found (with where it sits on the track's clock). Every
`HOP_SECONDS` of speech a window of the last `WINDOW_SECONDS` is due for an embedding; an
utterance too short for a whole window is embedded whole when it ends. The engine embeds the
due windows of every diarized stream in one batch, and each window's speaker comes from the
track's online clusters. A time on the track takes the speaker of the window whose centre is
nearest to it within the same utterance, so a voice change inside an utterance moves the label
at most half a hop from where it happened. State is bounded: the audio of the current utterance
(its last window) and the labelled windows of the last `KEEP_SECONDS`.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np

from .clusters import OnlineClusters, SpeakerHints
from .pcm import SAMPLE_RATE

WINDOW_SECONDS = 1.5
HOP_SECONDS = 0.75
KEEP_SECONDS = 120.0
MIN_SECONDS = 0.4  # shorter speech says too little about its speaker to embed
WINDOW = int(WINDOW_SECONDS * SAMPLE_RATE)
HOP = int(HOP_SECONDS * SAMPLE_RATE)
# A window this long says who speaks well enough to open a new speaker; a shorter one (a
# short utterance) joins the nearest speaker known, when there is one.
SURE = int(1.0 * SAMPLE_RATE)
MIN_TAIL = int(0.25 * SAMPLE_RATE)  # a tail this short adds little to the window before it


# The one list of diarization backends: "campplus" embeds windows of speech and clusters them
# online (the default); "sortformer" is NVIDIA's streaming Sortformer through NeMo (4 voices).
DiarizerName = Literal["campplus", "sortformer"]
DIARIZERS: tuple[str, ...] = get_args(DiarizerName)


@dataclass(frozen=True)
class DiarizerChoice:
    """Which diarization backend a process runs, and its model where it takes one (for
    sortformer: a .nemo file, or a hub name where a network exists)."""

    name: DiarizerName = "campplus"
    model: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DIARIZERS:
            raise ValueError(f"unknown diarizer {self.name!r}: use one of {', '.join(DIARIZERS)}")

    @classmethod
    def from_env(cls) -> DiarizerChoice:
        """ROOMSCRIBE_DIARIZER and ROOMSCRIBE_DIARIZER_MODEL, as every door reads them."""
        name = os.environ.get("ROOMSCRIBE_DIARIZER", "").strip().lower() or "campplus"
        return cls(name, os.environ.get("ROOMSCRIBE_DIARIZER_MODEL") or None)  # type: ignore[arg-type]


class TrackSpeakers(Protocol):
    """What a stream asks of its track's diarizer, whichever backend it is."""

    def speech(self, start_sample: int, samples: np.ndarray) -> None:
        """Speech the VAD found, at `start_sample` on the track's clock."""

    def pause(self) -> None:
        """The utterance ended."""

    def catch_up(self, until: float) -> None:
        """Do now the work words up to `until` (seconds) need, rather than at the next batch."""

    @property
    def has_labels(self) -> bool: ...

    def speaker_at(self, start: float, end: float) -> str | None:
        """The speaker of a word ("S1", "S2", ... in order of first use)."""


class SpeakerBackend(Protocol):
    """One per process, shared by every diarized stream and file; streams hold only state."""

    def track(self, hints: SpeakerHints) -> TrackSpeakers:
        """State for one more diarized stream."""

    def work(self, tracks: list) -> None:
        """The work the tracks have due, batched where the backend can; part of the engine's
        step, so the scheduler counts and paces it like decoding."""

    def diarize(self, audio: np.ndarray, vad, hints: SpeakerHints):
        """A whole recording: an object with `speakers`, `speaker_at(seconds)` and `turns()`."""


class SpeakerNames:
    """Labels as captions show them: S1, S2, ... in the order captions first name them."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def __call__(self, label: int) -> str:
        return self._names.setdefault(label, f"S{len(self._names) + 1}")


@dataclass
class SpeechWindow:
    """A stretch of speech due for an embedding (samples on the track's clock)."""

    utterance: int
    start: int
    end: int
    audio: np.ndarray
    label: int | None = None

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2 / SAMPLE_RATE


class TrackDiarizer:
    """The campplus backend's state for one track: windows, their labels, online clusters."""

    def __init__(self, embed: Callable[[list[np.ndarray]], np.ndarray], hints: SpeakerHints | None = None):
        self._embed = embed  # the shared encoder, for a window needed before its batch
        self.clusters = OnlineClusters(hints)
        self._utterance = -1
        self._audio = np.zeros(0, dtype=np.float32)  # the current utterance's last window of speech
        self._audio_start = 0  # track sample of _audio[0]
        self._utterance_start = 0
        self._covered_to = 0  # end of the current utterance's last window
        self._next_window = 0  # track sample where the next hop's window ends
        self._due: list[SpeechWindow] = []
        self._labelled: deque[SpeechWindow] = deque()
        self._open = False
        self._names = SpeakerNames()

    @property
    def _audio_end(self) -> int:
        return self._audio_start + len(self._audio)

    # -- input from the stream --------------------------------------------------
    def speech(self, start_sample: int, samples: np.ndarray) -> None:
        """Speech at `start_sample` on the track; a gap from the last speech starts a new utterance."""
        if len(samples) == 0:
            return
        if not self._open or start_sample != self._audio_end:
            self.pause()
            self._utterance += 1
            self._open = True
            self._audio = np.zeros(0, dtype=np.float32)
            self._audio_start = self._utterance_start = self._covered_to = start_sample
            self._next_window = start_sample + WINDOW
        self._audio = np.concatenate([self._audio, np.asarray(samples, dtype=np.float32)])
        while self._next_window <= self._audio_end:
            self._due.append(self._window(self._next_window - WINDOW, self._next_window))
            self._next_window += HOP
        keep = max(0, len(self._audio) - WINDOW)
        if keep:
            self._audio = self._audio[keep:]
            self._audio_start += keep

    def pause(self) -> None:
        """The utterance ended: what no window covered yet (all of it, if short) gets one."""
        if self._open:
            self._open = False
            self._cover_tail()

    def _cover_tail(self) -> SpeechWindow | None:
        end = self._audio_end
        if end - self._covered_to < MIN_TAIL or end - self._utterance_start < int(MIN_SECONDS * SAMPLE_RATE):
            return None
        window = self._window(max(self._utterance_start, end - WINDOW), end)
        self._due.append(window)
        return window

    def _window(self, start: int, end: int) -> SpeechWindow:
        self._covered_to = max(self._covered_to, end)
        lo = start - self._audio_start
        return SpeechWindow(self._utterance, start, end, self._audio[lo : end - self._audio_start].copy())

    # -- embeddings -------------------------------------------------------------
    def due(self) -> list[SpeechWindow]:
        """Windows waiting for an embedding; the caller hands each back to `learn`."""
        due, self._due = self._due, []
        return due

    def learn(self, window: SpeechWindow, embedding: np.ndarray) -> None:
        window.label = self.clusters.assign(embedding, can_open=window.end - window.start >= SURE)
        window.audio = np.zeros(0, dtype=np.float32)  # its audio has served
        self._labelled.append(window)
        horizon = window.end - int(KEEP_SECONDS * SAMPLE_RATE)
        while self._labelled and self._labelled[0].end < horizon:
            self._labelled.popleft()

    def catch_up(self, until: float) -> None:
        """Embed now what words up to `until` (seconds) need: windows still due, and the
        current utterance's latest speech when no window reaches that far yet."""
        if self._open and until * SAMPLE_RATE > self._covered_to - HOP // 2:
            self._cover_tail()
        due = self.due()
        if due:
            for window, embedding in zip(due, self._embed([w.audio for w in due])):
                self.learn(window, embedding)

    # -- labels -----------------------------------------------------------------
    @property
    def has_labels(self) -> bool:
        return bool(self._labelled)

    def label_at(self, seconds: float) -> int | None:
        """The speaker at a time on the track: the nearest window's (merges applied)."""
        if not self._labelled:
            return None
        nearest = min(self._labelled, key=lambda w: abs(w.centre - seconds))
        return self.clusters.resolve(nearest.label)

    def speaker_at(self, start: float, end: float) -> str | None:
        label = self.label_at((start + end) / 2)
        return None if label is None else self._names(label)
