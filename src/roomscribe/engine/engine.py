"""The engine: one model and one VAD per process, shared by every stream."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .clusters import SpeakerHints
from .events import Event
from .speakers import DiarizerChoice, SpeakerBackend
from .stream import SpeechStream, StreamConfig
from .text import tidy_text
from .utterance import Ticket
from .vad import SileroVAD
from .whisper import SAMPLE_RATE, DecodeOptions, WhisperRunner

log = logging.getLogger(__name__)


@dataclass
class EngineConfig:
    model: str | None = None  # "base", "tiny.en", a CTranslate2 directory or a hub name
    compute_type: str = "int8"
    threads: int = 0  # 0: all cores
    device: str = "cpu"
    max_batch: int = 8  # windows per model call; 1 switches batching off
    ride_share: float | None = 0.5  # a stream not due yet joins a batch with this share of its interval
    decode: DecodeOptions = field(default_factory=DecodeOptions)
    diarizer: DiarizerChoice | None = None  # None: ROOMSCRIBE_DIARIZER[_MODEL], else campplus


@dataclass
class OfflineSegment:
    start: float
    end: float
    text: str
    words: list[dict]
    avg_logprob: float = 0.0
    compression_ratio: float = 0.0
    no_speech_prob: float = 0.0
    speaker: str | None = None  # who said it, where the file was diarized


@dataclass
class OfflineTranscript:
    language: str
    language_probability: float
    duration: float
    processing_time: float
    segments: list[OfflineSegment]
    turns: list | None = None  # speaker turns (`SpeakerTurn`), where the file was diarized

    @property
    def text(self) -> str:
        return tidy_text(" ".join(s.text for s in self.segments), self.language)


class Engine:
    def __init__(
        self, config: EngineConfig | None = None, *, runner: WhisperRunner | None = None, vad: SileroVAD | None = None
    ):
        self.config = config or EngineConfig()
        if runner is None:
            from .models import load_whisper

            model, source = load_whisper(
                self.config.model,
                compute_type=self.config.compute_type,
                cpu_threads=self.config.threads,
                device=self.config.device,
            )
            runner = WhisperRunner(model, self.config.decode, name=source.name)
        self.runner = runner
        self.vad = vad if vad is not None else SileroVAD()
        self.diarizer_choice = self.config.diarizer or DiarizerChoice.from_env()
        self._diarizer: SpeakerBackend | None = None
        self._diarizer_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        return self.runner.name

    def open_stream(
        self, config: StreamConfig | None = None, stream_id: str | None = None, use_vad: bool = True
    ) -> SpeechStream:
        stream = SpeechStream(self.runner, self.vad if use_vad else None, config or StreamConfig(), stream_id)
        if stream.config.diarize:
            stream.speakers = self.diarizer.track(stream.config.speakers)
        return stream

    def check_diarization(self, hints: SpeakerHints | None = None) -> None:
        """Raise `DiarizationUnavailableError`, naming what to install, when this engine's
        diarization backend cannot run here, and ValueError when the hints ask for more
        voices than it tells apart; cheap, loads nothing."""
        from ..diarization.extras import check_hints, require_packages

        check_hints(self.diarizer_choice.name, hints)
        require_packages(self.diarizer_choice.name)

    @property
    def diarizer(self) -> SpeakerBackend:
        """The speaker diarization backend, loaded when the first diarized stream or file
        needs it (it needs an extra: a clear error names it)."""
        if self._diarizer is None:
            from ..diarization.backends import load_diarizer

            with self._diarizer_lock:
                if self._diarizer is None:
                    self._diarizer = load_diarizer(self.diarizer_choice)
        return self._diarizer

    def _diarize_due(self, streams: list[SpeechStream]) -> None:
        tracks = [s.speakers for s in streams if s.speakers is not None]
        if tracks:
            self.diarizer.work(tracks)

    def step(self, streams: Iterable[SpeechStream]) -> list[tuple[SpeechStream, Event]]:
        """One model call for the most urgent ready stream (its oldest speech not yet
        captioned has waited longest) and every other stream whose window has the same
        shape (`WhisperRunner.shape`): ready ones first, then ones not due yet, since a row
        costs far less than a call and an early decode brings their next caption sooner.
        Windows of other shapes wait for the next call, so results come out after each
        call rather than after a round of calls."""
        streams = list(streams)
        self._diarize_due(streams)
        ready = sorted((s for s in streams if s.ready()), key=lambda s: -s.lag_seconds)
        if not ready:
            return []
        shape = ready[0].request_shape(self.runner)
        same = [s for s in ready if s.request_shape(self.runner) == shape]
        if len(same) < self.config.max_batch > 1 and self.config.ride_share is not None:
            riders = [
                s
                for s in streams
                if not s.ready()
                and s.can_ride(self.config.ride_share)
                and s.request_shape(self.runner, early=True) == shape
            ]
            same += sorted(riders, key=lambda s: -s.lag_seconds)
        tickets: list[tuple[SpeechStream, Ticket]] = []
        for s in same[: self.config.max_batch]:
            ticket = s.next_request(early=True)
            if ticket is not None:
                tickets.append((s, ticket))
        try:
            results = self.runner.decode([t.request for _, t in tickets])
        except Exception:
            for s, t in tickets:
                s.cancel(t)
            raise
        out: list[tuple[SpeechStream, Event]] = []
        for (s, t), r in zip(tickets, results):
            out.extend((s, e) for e in s.apply(t, r))
        return out

    def drain(self, stream: SpeechStream) -> list[Event]:
        """Decode until the stream has nothing left to do (for offline-style use)."""
        events: list[Event] = []
        while stream.ready():
            events.extend(e for _, e in self.step([stream]))
        return events

    def transcribe(
        self,
        audio: np.ndarray,
        language: str | None = None,
        beam_size: int = 1,
        task: str = "transcribe",
        progress=None,
        lock=None,
        cancelled=None,
        initial_prompt: str | None = None,
        speakers: SpeakerHints | None = None,
    ) -> OfflineTranscript:
        """Whole-file transcription (faster-whisper's long-form path, VAD-filtered).
        `lock` is held around each window's model step only, so live streams sharing the
        model get their turns between a long file's windows; `cancelled()` true stops early.
        `speakers` (hints, possibly empty) diarizes the file: every segment and word gets a
        speaker, and a segment whose words change speaker is split."""
        started = time.perf_counter()
        duration = len(audio) / SAMPLE_RATE
        lock = lock if lock is not None else contextlib.nullcontext()
        # Not under the lock: this first step runs VAD and feature extraction over the whole
        # file (about 5 s per 20 minutes of audio here), which would stall every live stream
        # waiting for the model. Its one model call (language detection) is safe alongside
        # others: CTranslate2 queues concurrent calls itself.
        segments_iter, info = self.runner.fw_model.transcribe(
            audio,
            language=language,
            task=task,
            beam_size=beam_size,
            vad_filter=True,
            word_timestamps=True,
            condition_on_previous_text=True,
            initial_prompt=initial_prompt or None,
        )
        segments: list[OfflineSegment] = []
        while cancelled is None or not cancelled():
            with lock:
                seg = next(segments_iter, None)
            if seg is None:
                break
            words = [
                {
                    "word": w.word.strip(),
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "probability": round(w.probability, 3),
                }
                for w in (seg.words or [])
            ]
            segments.append(
                OfflineSegment(
                    round(seg.start, 3),
                    round(seg.end, 3),
                    tidy_text(seg.text, info.language),
                    words,
                    round(seg.avg_logprob, 4),
                    round(seg.compression_ratio, 4),
                    round(seg.no_speech_prob, 4),
                )
            )
            if progress is not None:
                progress(min(seg.end, duration), duration)
        turns = None
        if speakers is not None and (cancelled is None or not cancelled()):
            from ..diarization.files import attribute

            diarization = self.diarizer.diarize(audio, self.vad, speakers)
            segments = attribute(segments, diarization, info.language)
            turns = diarization.turns()
        return OfflineTranscript(
            info.language, float(info.language_probability), duration, time.perf_counter() - started, segments, turns
        )
