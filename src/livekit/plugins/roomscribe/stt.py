"""LiveKit Agents speech-to-text over `roomscribe.session`: a thin adapter.

Each run of a `RecognizeStream` is one `LiveSpeaker` on the process's shared engine worker;
its captions pass an `InterimThrottle` and then become LiveKit `SpeechEvent`s:

- speech start / end (the engine's VAD) → START_OF_SPEECH / END_OF_SPEECH (overlapping
  utterances are merged, so START and END alternate);
- a caption that is not final → INTERIM_TRANSCRIPT with the whole segment so far (committed
  words and the tail), at most one per `interim_interval` seconds, the newest one;
- a final caption → FINAL_TRANSCRIPT with the whole segment. Consumers append finals, so
  finals never repeat earlier text;
- audio taken → RECOGNITION_USAGE every 5 s of audio (and at each flush).

Frames of any rate and channel count are converted to 16 kHz mono in one place
(`roomscribe.audio.FrameConverter`, one per stream); frames that cannot be are skipped.

`flush()` ends the engine stream, so its tail is final at once, and the next audio starts a
fresh one. A flush with nothing left to finalise is acknowledged with an empty
FINAL_TRANSCRIPT (turn commits wait for a final); `end_input()`'s own flush is not.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from livekit.agents import APIConnectionError, APIConnectOptions, LanguageCode, stt, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr, TimedString
from livekit.agents.utils import AudioBuffer, is_given

from livekit import rtc
from roomscribe.audio import SAMPLE_RATE, FrameConverter
from roomscribe.diarization.extras import require_packages
from roomscribe.engine import Engine, StreamConfig, Word
from roomscribe.engine.clusters import SpeakerHints
from roomscribe.engine.policies import PolicyName
from roomscribe.engine.speakers import DiarizerChoice
from roomscribe.session import Caption, InterimThrottle, LiveSpeaker, Pipeline, shared_engine, worker_for
from roomscribe.session.options import parse_language, parse_policy, parse_prompt
from roomscribe.session.scheduler import MODEL_LOCK

from .log import logger

USAGE_INTERVAL = 5.0  # seconds of audio reported per RECOGNITION_USAGE event


@dataclass
class STTOptions:
    model: str
    policy: PolicyName
    language: str | None  # a Whisper language code; None: detected per stream
    interim_interval: float  # the least seconds between two interim transcripts of a stream
    min_chunk_seconds: float
    prompt: str = ""  # names and words to expect, kept in the decoder's context
    diarization: bool = False  # several voices on the stream: every transcript says whose (speaker_id)

    def stream_config(self) -> StreamConfig:
        # An agent appends each final transcript to its chat context and cannot take one back:
        # no second hearings that would replace a final.
        return StreamConfig(
            policy=self.policy,
            language=self.language,
            min_chunk_seconds=self.min_chunk_seconds,
            revise_finals=False,
            prompt=self.prompt,
            diarize=self.diarization,
        )


def _interim_interval(value: float) -> float:
    if not isinstance(value, int | float) or value < 0:
        raise ValueError(f"interim_interval must be a number of seconds >= 0, not {value!r}")
    return float(value)


class STT(stt.STT):
    def __init__(
        self,
        *,
        model: str = "base",
        policy: PolicyName = "localagreement",
        language: str | None = None,
        interim_interval: float = 0.25,
        min_chunk_seconds: float = 0.5,
        prompt: str | list[str] = "",
        diarization: bool = False,
        engine: Engine | None = None,
    ) -> None:
        """Self-hosted streaming Whisper.

        Args:
            model: "base", "tiny.en", a CTranslate2 Whisper directory or a hub name. Loaded
                once per process on first use and shared by every STT with the same model.
            policy: how words become final: one of `roomscribe.engine.policies.POLICIES`.
            language: a language code ("en", "en-US"), a name ("English"), or None / "auto" /
                "multi" to detect it per stream.
            interim_interval: the least time in seconds between two interim transcripts
                of one stream.
            min_chunk_seconds: new audio needed before the window is decoded again.
            prompt: names and words to expect ("Subiaco, Jenson", or a list of them), or a
                sentence of context: kept at the head of the decoder's context on every
                decode and never transcribed by itself. At most 500 characters.
            diarization: the audio carries several voices (a meeting room's microphone, a
                phone line): every transcript's `speaker_id` says whose it is ("S1", "S2", ...),
                and a change of voice ends a transcript. Needs the extra of the process's
                diarizer: `roomscribe[diarization]`, or `roomscribe[sortformer]` where
                ROOMSCRIBE_DIARIZER=sortformer.
            engine: an already loaded `roomscribe.engine.Engine` to use instead of `model`.

        Raises:
            ValueError: an option that cannot be used (an unknown language or policy, ...).
            DiarizationUnavailableError: diarization asked for without its extra installed.
        """
        if diarization:
            require_packages((engine.diarizer_choice if engine is not None else DiarizerChoice.from_env()).name)
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=True,
                diarization=diarization,
                aligned_transcript="word",
                offline_recognize=True,
                # flush() ends the engine stream, so its tail comes out as a final at once.
                manual_flush=True,
            )
        )
        self._opts = STTOptions(
            model=model,
            policy=parse_policy(policy),
            language=parse_language(language),
            interim_interval=_interim_interval(interim_interval),
            min_chunk_seconds=min_chunk_seconds,
            prompt=parse_prompt(prompt),
            diarization=diarization,
        )
        self._opts.stream_config()  # validates min_chunk_seconds early
        self._engine = engine
        self._streams: weakref.WeakSet[RecognizeStream] = weakref.WeakSet()

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

    def update_options(
        self,
        *,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        interim_interval: NotGivenOr[float] = NOT_GIVEN,
        prompt: NotGivenOr[str | list[str]] = NOT_GIVEN,
    ) -> None:
        """Change options for new streams and every open one (a new language or prompt
        starts a fresh engine stream once the current sentence is final)."""
        if is_given(language):
            self._opts.language = parse_language(language)
        if is_given(interim_interval):
            self._opts.interim_interval = _interim_interval(interim_interval)
        if is_given(prompt):
            self._opts.prompt = parse_prompt(prompt)
        for stream in self._streams:
            stream.update_options(language=language, interim_interval=interim_interval, prompt=prompt)

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        lang = parse_language(language) if is_given(language) else self._opts.language
        audio = buffer_pcm(buffer)
        request_id = utils.shortuuid("RS_")
        if len(audio) < SAMPLE_RATE // 100:  # under 10 ms: nothing to transcribe
            data = stt.SpeechData(language=LanguageCode(lang or ""), text="")
            return stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id, alternatives=[data]
            )
        engine = await self._get_engine()

        result = await asyncio.to_thread(
            engine.transcribe,
            audio,
            language=lang,
            lock=MODEL_LOCK,
            initial_prompt=self._opts.prompt or None,
            speakers=SpeakerHints() if self._opts.diarization else None,
        )
        words = [
            TimedString(w["word"].strip(), start_time=w["start"], end_time=w["end"], confidence=w["probability"])
            for seg in result.segments
            for w in seg.words
            if w["word"].strip()
        ]
        data = stt.SpeechData(
            language=LanguageCode(result.language),
            text=result.text,
            start_time=result.segments[0].start if result.segments else 0.0,
            end_time=result.segments[-1].end if result.segments else 0.0,
            confidence=_mean_confidence(words),
            words=words,
            speaker_id=result.segments[0].speaker if result.segments else None,
        )
        return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, request_id=request_id, alternatives=[data])

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> RecognizeStream:
        opts = dataclasses.replace(self._opts)
        if is_given(language):
            opts.language = parse_language(language)
        stream = RecognizeStream(stt=self, conn_options=conn_options, opts=opts)
        self._streams.add(stream)
        return stream


class RecognizeStream(stt.RecognizeStream):
    def __init__(self, *, stt: STT, conn_options: APIConnectOptions, opts: STTOptions) -> None:
        # No sample_rate: frames arrive as pushed and are converted in one place (`_pcm`).
        super().__init__(stt=stt, conn_options=conn_options)
        self._roomscribe = stt
        self._opts = opts
        self._converter = FrameConverter()
        self._bad_frames = 0
        self._speaker: LiveSpeaker | None = None  # the speaker of the run in progress
        self._throttle: InterimThrottle | None = None
        self._speech_depth = 0  # utterances open: the next may start before the last is decoded
        self._language = opts.language or ""
        self._finals_sent = 0

    def update_options(
        self,
        *,
        language: NotGivenOr[str | None] = NOT_GIVEN,
        interim_interval: NotGivenOr[float] = NOT_GIVEN,
        prompt: NotGivenOr[str | list[str]] = NOT_GIVEN,
    ) -> None:
        if is_given(language):
            self._opts.language = parse_language(language)
            if self._speaker is not None:
                self._speaker.set_language(self._opts.language)
        if is_given(prompt):
            self._opts.prompt = parse_prompt(prompt)
            if self._speaker is not None:
                self._speaker.set_prompt(self._opts.prompt)
        if is_given(interim_interval):
            self._opts.interim_interval = _interim_interval(interim_interval)
            if self._throttle is not None:
                self._throttle.interval = self._opts.interim_interval

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        # Not the base class's: it resamples only mono and refuses a change of rate; here every
        # frame goes as it is to `_pcm`.
        self._check_input_not_ended()
        self._check_not_closed()
        self._input_ch.send_nowait(frame)

    # -- the run --------------------------------------------------------------------------
    async def _run(self) -> None:
        engine = await self._roomscribe._get_engine()
        failure: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

        def failed(error: BaseException) -> None:
            if not failure.done():
                failure.set_result(error)

        self._speech_depth = 0
        self._finals_sent = 0
        self._language = self._opts.language or ""
        self._throttle = InterimThrottle(self._opts.interim_interval)
        # Without restarts a failed engine stream ends the run with an APIConnectionError, and
        # the base class's retry logic starts a fresh one.
        speaker = self._speaker = LiveSpeaker(
            worker_for(engine),
            self._opts.stream_config(),
            name=utils.shortuuid("STT_"),
            pipeline=Pipeline([self._throttle], [self._on_caption]),
            restart_delays=(),
            on_activity=self._on_activity,
            on_failure=failed,
        )
        pump = asyncio.create_task(self._pump(speaker, failure), name="roomscribe.input")
        try:
            await asyncio.wait([pump, failure], return_when=asyncio.FIRST_COMPLETED)
            _raise_if_failed(speaker, failure)
            pump.result()
        finally:
            await utils.aio.cancel_and_wait(pump)
            speaker.close()  # cancelled or failed: drop what the engine holds
            speaker.pipeline.drain()  # and any interim held back
            self._speaker = self._throttle = None

    async def _pump(self, speaker: LiveSpeaker, failure: asyncio.Future[BaseException]) -> None:
        usage = 0.0
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                # End of a segment: finalise what the engine holds, then start afresh.
                usage += _push(speaker, self._converter.flush())
                finals = self._finals_sent
                drained = speaker.flush()
                if drained is not None:
                    await drained
                _raise_if_failed(speaker, failure)
                speaker.pipeline.drain()  # nothing of the flushed stream is pending any more
                ending = self._input_ch.closed and self._input_ch.empty()  # end_input()'s own flush
                if self._finals_sent == finals and not ending:
                    # Acknowledge a flush that had nothing left to finalise: a manual turn
                    # commit waits for a final transcript.
                    self._send(
                        stt.SpeechEvent(
                            type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[self._speech_data("", [])]
                        )
                    )
                usage = self._send_usage(usage)
                continue
            pcm = self._pcm(item)
            if pcm is None:
                continue
            usage += _push(speaker, pcm)
            if usage >= USAGE_INTERVAL:
                usage = self._send_usage(usage)
        usage += _push(speaker, self._converter.flush())
        await speaker.finish()
        _raise_if_failed(speaker, failure)
        self._send_usage(usage)

    def _pcm(self, frame: object) -> np.ndarray | None:
        """A frame as 16 kHz mono float32, or None (skipped) when it cannot be converted."""
        try:
            if not isinstance(frame, rtc.AudioFrame):
                raise TypeError(f"not an rtc.AudioFrame: {type(frame).__name__}")
            return self._converter.pcm(frame.data, frame.sample_rate, frame.num_channels)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the stream
            self._bad_frames += 1
            if self._bad_frames == 1 or self._bad_frames % 100 == 0:
                logger.warning("skipping bad audio frame (%d so far): %s", self._bad_frames, exc)
            return None

    # -- captions to LiveKit events --------------------------------------------------------
    def _on_activity(self, kind: str, _at: float) -> None:
        if kind == "speech_start":
            self._speech_depth += 1
            if self._speech_depth == 1:
                self._send(stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
        elif kind == "speech_end" and self._speech_depth > 0:
            self._speech_depth -= 1
            if self._speech_depth == 0:
                self._send(stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH))

    def _on_caption(self, caption: Caption) -> None:
        if caption.language:
            self._language = caption.language
        if caption.final:
            if not caption.text.strip():
                return
            self._finals_sent += 1
            self._send(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                    request_id=caption.segment_id,
                    alternatives=[self._speech_data(caption.text, caption.words, caption.speaker)],
                )
            )
            return
        text = caption.shown
        if text.strip():
            self._send(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.INTERIM_TRANSCRIPT,
                    request_id=caption.segment_id,
                    alternatives=[self._speech_data(text, [*caption.words, *caption.tail_words], caption.speaker)],
                )
            )

    def _speech_data(self, text: str, words: list[Word], speaker: str | None = None) -> stt.SpeechData:
        # Caption times are on this run's audio clock; LiveKit wants the input's clock plus
        # start_time_offset (which the base class and the agent advance, so read it now).
        timed = _timed_words(words, self.start_time_offset)
        return stt.SpeechData(
            language=LanguageCode(self._language),
            text=text.strip(),
            start_time=timed[0].start_time if timed else 0.0,
            end_time=timed[-1].end_time if timed else 0.0,
            confidence=_mean_confidence(timed),
            words=timed,
            speaker_id=speaker,
        )

    def _send_usage(self, seconds: float) -> float:
        if seconds > 0:
            self._send(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.RECOGNITION_USAGE,
                    recognition_usage=stt.RecognitionUsage(audio_duration=seconds),
                )
            )
        return 0.0

    def _send(self, event: stt.SpeechEvent) -> None:
        if not self._event_ch.closed:
            self._event_ch.send_nowait(event)


def _timed_words(words: list[Word], offset: float) -> list[TimedString]:
    """Words as LiveKit `TimedString`s, shifted by `offset`."""
    return [
        TimedString(
            w.text.strip(),
            start_time=w.start + offset,
            end_time=w.end + offset,
            confidence=w.probability,
            start_time_offset=offset,
        )
        for w in words
        if w.text.strip()
    ]


def buffer_pcm(buffer: AudioBuffer) -> np.ndarray:
    """An AudioBuffer (frames of any rate and channels) as 16 kHz mono float32."""
    converter = FrameConverter()
    frames = buffer if isinstance(buffer, list) else [buffer]
    chunks = [converter.pcm(f.data, f.sample_rate, f.num_channels) for f in frames if f.samples_per_channel]
    chunks.append(converter.flush())
    return np.concatenate(chunks)


def _push(speaker: LiveSpeaker, pcm: np.ndarray) -> float:
    """Give audio to the speaker; the seconds given."""
    if len(pcm) == 0:
        return 0.0  # an empty push would open an engine stream for nothing
    speaker.push(pcm)
    return len(pcm) / SAMPLE_RATE


def _raise_if_failed(speaker: LiveSpeaker, failure: asyncio.Future[BaseException]) -> None:
    """The run ends with an APIConnectionError once an engine stream of it failed."""
    if failure.done():
        error = failure.result()
        raise APIConnectionError(f"roomscribe engine failed: {error}") from error


def _mean_confidence(words: list[TimedString]) -> float:
    scores = [w.confidence for w in words if is_given(w.confidence)]
    return float(sum(scores) / len(scores)) if scores else 0.0
