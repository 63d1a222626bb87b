"""LiveKit Agents speech-to-text over the roomscribe streaming engine.

Mapping of engine events to LiveKit `SpeechEvent`s:

- speech_start → START_OF_SPEECH (overlapping utterances are merged, so START and END
  alternate);
- interim, and finals that do not close their segment → INTERIM_TRANSCRIPT with the
  whole segment so far (an interim replaces the previous one), at most one per
  `interim_interval` seconds; the latest one is sent when the interval has passed;
- a final that closes its segment (a sentence, or the end of an utterance) →
  FINAL_TRANSCRIPT with the whole segment. Consumers append finals, so finals never
  repeat earlier text;
- speech_end → END_OF_SPEECH; audio taken → RECOGNITION_USAGE.

`flush()` ends the engine stream, so its tail is final at once, and the next audio
starts a fresh one. A flush with nothing left to finalise is acknowledged with an
empty FINAL_TRANSCRIPT (turn commits wait for a final); `end_input()` is not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass

import numpy as np

from livekit import rtc
from livekit.agents import APIConnectionError, APIConnectOptions, LanguageCode, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given
from roomscribe.engine import Engine, Event, EventType, StreamConfig, Word
from roomscribe.scheduler import (MODEL_LOCK, Drained, EngineWorker, Failure, StreamHandle, loop_delivery, shared_engine,
                                  worker_for)

from .audio import SAMPLE_RATE, frames_to_pcm, mono_frame, whisper_language
from .log import logger

USAGE_INTERVAL = 5.0  # seconds of audio reported per RECOGNITION_USAGE event


@dataclass
class STTOptions:
    model: str
    policy: str
    language: str | None
    interim_interval: float
    min_chunk_seconds: float


class STT(stt.STT):
    def __init__(
        self,
        *,
        model: str = "base",
        policy: str = "localagreement",
        language: str | None = None,
        interim_interval: float = 0.25,
        min_chunk_seconds: float = 0.5,
        engine: Engine | None = None,
    ) -> None:
        """Self-hosted streaming Whisper.

        Args:
            model: "base", "tiny.en", a CTranslate2 Whisper directory or a hub name. Loaded
                once per process on first use and shared by every STT with the same model.
            policy: "localagreement" or "alignatt" (how words become final).
            language: a language code, or None to detect it per stream.
            interim_interval: the least time in seconds between two interim transcripts
                of one stream.
            min_chunk_seconds: new audio needed before the window is decoded again.
            engine: an already loaded `roomscribe.engine.Engine` to use instead of `model`.
        """
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=True,
                diarization=False,
                aligned_transcript="word",
                offline_recognize=True,
                # flush() ends the engine stream, so its tail comes out as a final at once.
                manual_flush=True,
            )
        )
        if interim_interval < 0:
            raise ValueError("interim_interval must be >= 0")
        StreamConfig(policy=policy, min_chunk_seconds=min_chunk_seconds)  # validates both early
        self._opts = STTOptions(model=model, policy=policy, language=language,
                                interim_interval=interim_interval, min_chunk_seconds=min_chunk_seconds)
        self._engine = engine

    @property
    def model(self) -> str:
        return self._engine.model_name if self._engine is not None else self._opts.model

    @property
    def provider(self) -> str:
        return "roomscribe"

    @property
    def engine(self) -> Engine | None:
        """The engine, once loaded (None until first use unless one was given)."""
        return self._engine

    def prewarm(self) -> None:
        """Start loading the model in the background, so the first stream does not wait."""
        if self._engine is None:
            threading.Thread(target=self._load_engine, name="roomscribe-load", daemon=True).start()

    def _load_engine(self) -> Engine:
        if self._engine is None:
            self._engine = shared_engine(self._opts.model)
        return self._engine

    async def _get_engine(self) -> Engine:
        if self._engine is not None:
            return self._engine
        return await asyncio.to_thread(self._load_engine)  # loading takes seconds: off the loop

    def _stream_config(self, language: NotGivenOr[str | None]) -> StreamConfig:
        lang = language if is_given(language) else self._opts.language
        return StreamConfig(policy=self._opts.policy, language=whisper_language(lang),
                            min_chunk_seconds=self._opts.min_chunk_seconds)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        audio = frames_to_pcm(buffer)
        lang = whisper_language(language if is_given(language) else self._opts.language)
        request_id = utils.shortuuid("RS_")
        if len(audio) < SAMPLE_RATE // 100:  # under 10 ms: nothing to transcribe
            data = stt.SpeechData(language=LanguageCode(lang or ""), text="")
            return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id,
                                   alternatives=[data])
        engine = await self._get_engine()

        result = await asyncio.to_thread(engine.transcribe, audio, language=lang, lock=MODEL_LOCK)
        words = [TimedString(w["word"], start_time=w["start"], end_time=w["end"], confidence=w["probability"])
                 for seg in result.segments for w in seg.words]
        data = stt.SpeechData(
            language=LanguageCode(result.language),
            text=result.text,
            start_time=result.segments[0].start if result.segments else 0.0,
            end_time=result.segments[-1].end if result.segments else 0.0,
            confidence=_mean_confidence(words),
            words=words,
        )
        return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id,
                               alternatives=[data])

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> RecognizeStream:
        return RecognizeStream(stt=self, conn_options=conn_options, config=self._stream_config(language),
                               interim_interval=self._opts.interim_interval)


class RecognizeStream(stt.RecognizeStream):
    def __init__(self, *, stt: STT, conn_options: APIConnectOptions, config: StreamConfig,
                 interim_interval: float) -> None:
        # sample_rate: the base class resamples pushed frames to 16 kHz for us.
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._roomscribe = stt
        self._config = config
        self._interim_interval = interim_interval
        self._bad_frames = 0
        self._reset()

    def _reset(self) -> None:
        """Caption state of one `_run` (a retry starts on a fresh engine stream)."""
        self._audio_seconds = 0.0  # audio given to the engine in this run
        self._speech_depth = 0  # utterances open: the next may start before the last is decoded
        self._segment_words: list[TimedString] = []
        self._language = self._config.language or ""
        self._pending_interim: stt.SpeechEvent | None = None
        self._last_interim_at = -float("inf")
        self._interim_timer: asyncio.TimerHandle | None = None
        self._drained: dict[StreamHandle, asyncio.Future[None]] = {}
        self._handle: StreamHandle | None = None  # the engine stream taking audio now
        self._finals_sent = 0

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        if not isinstance(frame, rtc.AudioFrame):
            self._skip_frame(f"not an rtc.AudioFrame: {type(frame).__name__}")
            return
        if frame.num_channels > 1:
            # The base class's resampler is mono: fold the channels first.
            try:
                frame = mono_frame(frame)
            except ValueError as exc:
                self._skip_frame(str(exc))
                return
        super().push_frame(frame)

    def _skip_frame(self, why: str) -> None:
        self._bad_frames += 1
        if self._bad_frames == 1 or self._bad_frames % 100 == 0:
            logger.warning("skipping bad audio frame (%d so far): %s", self._bad_frames, why)

    # -- the run: input pump and event pump --------------------------------------------
    async def _run(self) -> None:
        self._reset()
        engine = await self._roomscribe._get_engine()
        worker = worker_for(engine)
        inbox: asyncio.Queue[tuple[StreamHandle, object]] = asyncio.Queue()
        deliver = loop_delivery(asyncio.get_running_loop(), lambda h, item: inbox.put_nowait((h, item)))
        events = asyncio.create_task(self._event_pump(inbox), name="roomscribe.events")
        pump = asyncio.create_task(self._input_pump(worker, deliver), name="roomscribe.input")
        try:
            done, _ = await asyncio.wait([events, pump], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure in either pump ends the run with its error
        finally:
            await utils.aio.cancel_and_wait(pump, events)
            if self._handle is not None:  # cancelled or failed: drop what the engine holds
                worker.close(self._handle)
                self._handle = None
            self._drop_interim()

    async def _input_pump(self, worker: EngineWorker, deliver) -> None:
        usage = 0.0
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                # End of a segment: finalise what the engine holds, then start afresh.
                finals = self._finals_sent
                await self._finish(worker)
                ending = self._input_ch.closed and self._input_ch.empty()  # end_input()'s own flush
                if self._finals_sent == finals and not ending:
                    # Acknowledge a flush that had nothing left to finalise: a manual turn
                    # commit waits for a final transcript.
                    self._send(stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                                               alternatives=[self._speech_data("", [])]))
                usage = self._send_usage(usage)
                continue
            pcm = self._frame_to_pcm(item)
            if pcm is None or len(pcm) == 0:
                continue
            if self._handle is None:
                self._handle = worker.open(self._config, deliver, offset=self._audio_seconds)
                self._drained[self._handle] = asyncio.get_running_loop().create_future()
            worker.push(self._handle, pcm)
            seconds = len(pcm) / SAMPLE_RATE
            self._audio_seconds += seconds
            usage += seconds
            if usage >= USAGE_INTERVAL:
                usage = self._send_usage(usage)
        await self._finish(worker)
        self._send_usage(usage)

    async def _finish(self, worker: EngineWorker) -> None:
        """End the engine stream and wait until its last events have been sent."""
        if self._handle is None:
            return
        worker.end(self._handle)
        await self._drained[self._handle]
        del self._drained[self._handle]
        self._handle = None

    async def _event_pump(self, inbox: asyncio.Queue) -> None:
        while True:
            # Take everything one model call produced before deciding on an interim, so a
            # commit followed by the new tail goes out as one interim, not two.
            batch = [await inbox.get()]
            while not inbox.empty():
                batch.append(inbox.get_nowait())
            for handle, item in batch:
                if isinstance(item, Failure):
                    raise APIConnectionError(f"roomscribe engine failed: {item.error}") from item.error
                if isinstance(item, Drained):
                    waiter = self._drained.get(handle)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                else:
                    self._on_engine_event(handle, item)
            self._schedule_interim()

    def _frame_to_pcm(self, frame: object) -> np.ndarray | None:
        try:
            if not isinstance(frame, rtc.AudioFrame):
                raise TypeError(f"not an rtc.AudioFrame: {type(frame).__name__}")
            if frame.sample_rate != SAMPLE_RATE:
                raise ValueError(f"sample rate {frame.sample_rate} Hz, expected {SAMPLE_RATE}")
            if frame.num_channels != 1:
                frame = mono_frame(frame)
            return np.frombuffer(frame.data, dtype=np.int16).astype(np.float32) / 32768.0
        except (TypeError, ValueError) as exc:
            self._skip_frame(str(exc))
            return None

    # -- engine events to LiveKit events ----------------------------------------------------
    def _on_engine_event(self, handle: StreamHandle, ev: Event) -> None:
        if ev.language:
            self._language = ev.language
        if ev.type is EventType.SPEECH_START:
            self._speech_depth += 1
            if self._speech_depth == 1:
                self._send(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH, request_id=ev.segment_id))
        elif ev.type is EventType.INTERIM:
            words = self._segment_words + self._timed(handle, ev.words)
            self._offer_interim(ev.segment_id, ev.segment_text, words)
        elif ev.type is EventType.FINAL:
            self._segment_words += self._timed(handle, ev.words)
            if not ev.segment_final:
                # Committed, but the sentence goes on: shown as the segment's interim.
                self._offer_interim(ev.segment_id, ev.segment_text, list(self._segment_words))
                return
            self._drop_interim()  # the final supersedes it
            words, self._segment_words = self._segment_words, []
            if ev.segment_text.strip():
                self._finals_sent += 1
                self._send(stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=ev.segment_id,
                                           alternatives=[self._speech_data(ev.segment_text, words)]))
        elif ev.type is EventType.SPEECH_END:
            self._drop_interim()  # the engine finalised the whole tail
            self._speech_depth = max(0, self._speech_depth - 1)
            if self._speech_depth == 0:
                self._send(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH, request_id=ev.segment_id))

    def _timed(self, handle: StreamHandle, words: list[Word]) -> list[TimedString]:
        # Engine times are on the engine stream's clock; LiveKit wants the input's clock
        # plus start_time_offset (which the base class advances across retries).
        base = handle.offset + self.start_time_offset
        return [TimedString(w.text.strip(), start_time=w.start + base, end_time=w.end + base,
                            confidence=w.probability, start_time_offset=self.start_time_offset)
                for w in words if w.text.strip()]

    def _speech_data(self, text: str, words: list[TimedString]) -> stt.SpeechData:
        return stt.SpeechData(
            language=LanguageCode(self._language),
            text=text.strip(),
            start_time=words[0].start_time if words else 0.0,
            end_time=words[-1].end_time if words else 0.0,
            confidence=_mean_confidence(words),
            words=words,
        )

    def _offer_interim(self, segment_id: str, text: str, words: list[TimedString]) -> None:
        if not text.strip():
            return
        self._pending_interim = stt.SpeechEvent(type=stt.SpeechEventType.INTERIM_TRANSCRIPT, request_id=segment_id,
                                                alternatives=[self._speech_data(text, words)])

    def _schedule_interim(self) -> None:
        if self._pending_interim is None:
            return
        wait = self._last_interim_at + self._interim_interval - time.monotonic()
        if wait <= 0:
            self._send_pending_interim()
        elif self._interim_timer is None:
            # Rate-limited: the latest interim goes out when the interval has passed.
            self._interim_timer = asyncio.get_running_loop().call_later(wait, self._send_pending_interim)

    def _send_pending_interim(self) -> None:
        pending = self._pending_interim
        self._drop_interim()
        if pending is not None:
            self._last_interim_at = time.monotonic()
            self._send(dataclasses.replace(pending, created_at=time.time()))  # stamped when it goes out

    def _drop_interim(self) -> None:
        if self._interim_timer is not None:
            self._interim_timer.cancel()
            self._interim_timer = None
        self._pending_interim = None

    def _send_usage(self, seconds: float) -> float:
        if seconds > 0:
            self._send(stt.SpeechEvent(type=stt.SpeechEventType.RECOGNITION_USAGE,
                                       recognition_usage=stt.RecognitionUsage(audio_duration=seconds)))
        return 0.0

    def _send(self, event: stt.SpeechEvent) -> None:
        if not self._event_ch.closed:
            self._event_ch.send_nowait(event)


def _mean_confidence(words: list[TimedString]) -> float:
    scores = [w.confidence for w in words if is_given(w.confidence)]
    return float(sum(scores) / len(scores)) if scores else 0.0
