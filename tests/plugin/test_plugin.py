"""The LiveKit Agents plugin on real SDK objects (no server), with the real engine on
recorded speech and a scripted engine for the plumbing."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

pytest.importorskip("livekit.agents")

from livekit.agents import stt as lkstt  # noqa: E402
from livekit.agents.types import TimedString  # noqa: E402

import roomscribe as roomscribe_package  # noqa: E402
from livekit import rtc  # noqa: E402
from livekit.plugins import roomscribe  # noqa: E402
from roomscribe.engine import Event, EventType, Word  # noqa: E402
from roomscribe.session import scheduler  # noqa: E402
from support.livekit_frames import frames_48k  # noqa: E402
from support.speech import read_audio, wer  # noqa: E402

LJ = "asr/en/ljspeech/LJ001-0001.flac"
T = lkstt.SpeechEventType


def finals(events) -> list[lkstt.SpeechEvent]:
    return [e for e in events if e.type is T.FINAL_TRANSCRIPT and e.alternatives[0].text]


async def run_stream(stt, frames, *, realtime: bool, flush_after: int | None = None) -> dict:
    """Push frames (at 1x when `realtime`), then end the input; collect every event and
    the event loop's worst delay (a heartbeat that should tick every 10 ms)."""
    stream = stt.stream()
    events: list[lkstt.SpeechEvent] = []
    lag = 0.0

    async def read():
        async for ev in stream:
            events.append(ev)

    async def heartbeat():
        nonlocal lag
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lag = max(lag, time.perf_counter() - before - 0.01)

    reader = asyncio.create_task(read())
    beat = asyncio.create_task(heartbeat())
    started = time.perf_counter()
    for i, frame in enumerate(frames):
        stream.push_frame(frame)
        if flush_after is not None and i + 1 == flush_after:
            stream.flush()
        if realtime and i % 10 == 9:  # 100 ms at a time, on an absolute schedule
            await asyncio.sleep(max(0.0, started + (i + 1) * 0.01 - time.perf_counter()))
    stream.end_input()
    await asyncio.wait_for(reader, timeout=120)
    beat.cancel()
    await stream.aclose()
    return {"events": events, "lag": lag, "seconds": len(frames) * 0.01}


# -- the real engine on recorded speech --------------------------------------------------------
@pytest.fixture(scope="module")
def speech(eval_dir, manifest):
    return read_audio(eval_dir / LJ), manifest[LJ]["reference_text"]


@pytest.fixture(scope="module")
def live(engine, speech):
    """One 1x run of the recording (plus 1 s of silence) through a stream."""
    audio, _ = speech
    stt = roomscribe.STT(engine=engine, interim_interval=1.0)
    frames = frames_48k(np.concatenate([audio, np.zeros(16000, np.float32)]))
    return asyncio.run(run_stream(stt, frames, realtime=True))


def test_events_come_in_order_and_the_text_is_right(live, speech):
    events = [e for e in live["events"] if e.type is not T.RECOGNITION_USAGE]
    types = [e.type for e in events]
    assert types[0] is T.START_OF_SPEECH and types[-1] is T.END_OF_SPEECH
    first = {t: types.index(t) for t in (T.START_OF_SPEECH, T.INTERIM_TRANSCRIPT, T.FINAL_TRANSCRIPT)}
    assert first[T.START_OF_SPEECH] < first[T.INTERIM_TRANSCRIPT] < first[T.FINAL_TRANSCRIPT]
    # START and END alternate; nothing is transcribed outside them.
    edges = [t for t in types if t in (T.START_OF_SPEECH, T.END_OF_SPEECH)]
    assert edges == [T.START_OF_SPEECH, T.END_OF_SPEECH] * (len(edges) // 2)
    text = " ".join(e.alternatives[0].text for e in finals(events))
    assert wer(speech[1], text) <= 0.2, text
    assert all(e.alternatives[0].language == "en" for e in finals(events))


def test_final_words_are_timed_strings_on_the_input_clock(live, speech):
    for ev in finals(live["events"]):
        data = ev.alternatives[0]
        assert data.words and all(isinstance(w, TimedString) for w in data.words)
        assert " ".join(data.words).split() == data.text.split()
        starts = [w.start_time for w in data.words]
        assert starts == sorted(starts)
        # On the input clock: inside the audio given (the speech and 1 s of silence after it; the
        # last word's end may reach into the VAD's end pad, which differs a little between CPUs).
        assert all(0 <= w.start_time <= w.end_time <= live["seconds"] for w in data.words)
        assert data.start_time == data.words[0].start_time and data.end_time == data.words[-1].end_time
        assert 0 < data.confidence <= 1


def test_usage_reports_all_the_audio(live):
    usage = [e.recognition_usage.audio_duration for e in live["events"] if e.type is T.RECOGNITION_USAGE]
    assert usage and sum(usage) == pytest.approx(live["seconds"], abs=0.1)


def test_interims_are_rate_limited(live):
    interims = [e for e in live["events"] if e.type is T.INTERIM_TRANSCRIPT]
    assert interims and len(interims) <= live["seconds"] / 1.0 + 1
    gaps = np.diff([e.created_at for e in interims])
    assert (gaps >= 0.95).all(), gaps
    # Interims of a segment grow out of what was already said: each shows the segment so far.
    assert all(e.alternatives[0].text for e in interims)


def test_the_event_loop_never_waits_for_the_model(live):
    assert live["lag"] < 0.25, live["lag"]


def test_flush_finalises_at_once_and_the_clock_goes_on(engine, speech):
    audio, reference = speech
    stt = roomscribe.STT(engine=engine)
    frames = frames_48k(audio)
    # The same recording twice, with a flush between (no silence: only the flush ends it).
    result = asyncio.run(run_stream(stt, frames + frames, realtime=False, flush_after=len(frames)))
    done = finals(result["events"])
    first = [e for e in done if e.alternatives[0].end_time <= len(frames) * 0.01 + 0.1]
    second = [e for e in done if e.alternatives[0].start_time >= len(frames) * 0.01 - 0.1]
    assert first and second and len(first) + len(second) == len(done)
    assert wer(reference, " ".join(e.alternatives[0].text for e in first)) <= 0.2
    assert wer(reference, " ".join(e.alternatives[0].text for e in second)) <= 0.2


def test_recognize_transcribes_a_buffer_offline(engine, speech):
    audio, reference = speech
    stt = roomscribe.STT(engine=engine)
    ev = asyncio.run(stt.recognize(frames_48k(audio)))
    data = ev.alternatives[0]
    assert ev.type is T.FINAL_TRANSCRIPT and data.language == "en"
    assert wer(reference, data.text) <= 0.2, data.text
    assert data.words and all(isinstance(w, TimedString) for w in data.words)
    assert 0 <= data.start_time < data.end_time <= len(audio) / 16000 + 0.5


# -- plumbing, with a scripted engine (no model) ---------------------------------------------------
class ScriptedStream:
    """Says one word per 0.5 s of audio; its end gives a final and a speech end."""

    decode_interval = 0.5
    pace = None  # set by the worker's governor; a scripted stream ignores it

    def __init__(self):
        self.received = self.pending = 0
        self.words: list[Word] = []
        self.started = self.ended = self.flushed = False

    @property
    def received_seconds(self):
        return self.received / 16000

    @property
    def lag_seconds(self):
        return self.pending / 16000

    def push(self, audio):
        assert audio.dtype == np.float32 and audio.ndim == 1
        self.received += len(audio)
        self.pending += len(audio)
        if self.started:
            return []
        self.started = True
        return [Event(EventType.SPEECH_START, "SG_x", 0.0)]

    def ready(self):
        return self.pending >= 8000 or (self.ended and self.started and not self.flushed)

    def end(self):
        self.ended = True


class ScriptedEngine:
    model_name = "scripted"

    def __init__(self, step_seconds: float = 0.0):
        self.step_seconds = step_seconds

    def open_stream(self, config):
        return ScriptedStream()

    def step(self, streams):
        out = []
        for s in [s for s in streams if s.ready()]:
            t = s.received / 16000
            if s.pending < 8000:  # ended: flush
                s.flushed = True
                text = " ".join(w.text.strip() for w in s.words)
                out += [
                    (
                        s,
                        Event(
                            EventType.FINAL,
                            "SG_x",
                            t,
                            words=list(s.words),
                            segment_final=True,
                            segment_text=text,
                            language="en",
                        ),
                    ),
                    (s, Event(EventType.SPEECH_END, "SG_x", t)),
                ]
            else:
                s.pending -= 8000
                s.words.append(Word(f" w{len(s.words)}", t - 0.4, t - 0.1, 0.9))
                out.append(
                    (
                        s,
                        Event(
                            EventType.INTERIM,
                            "SG_x",
                            t,
                            words=s.words[-1:],
                            language="en",
                            segment_text=" ".join(w.text.strip() for w in s.words),
                        ),
                    )
                )
        time.sleep(self.step_seconds)  # a model call that takes time
        return out


def silence_48k(seconds: float, channels: int = 1) -> list[rtc.AudioFrame]:
    return frames_48k(np.full(int(seconds * 16000), 0.01, np.float32), channels)


def test_bad_frames_are_skipped_and_stereo_is_folded():
    stt = roomscribe.STT(engine=ScriptedEngine())

    async def run():
        stream = stt.stream()
        stream.push_frame("not a frame")  # type: ignore[arg-type]
        stream.push_frame(rtc.AudioFrame(bytes(320), 0, 1, 160))  # a rate no converter takes
        stream.push_frame(rtc.AudioFrame(bytes(320), 48000, 0, 160))  # no channels
        for frame in silence_48k(1.2, channels=2):
            stream.push_frame(frame)
        stream.end_input()
        return [e async for e in stream]

    events = asyncio.run(run())
    assert [e.type for e in events if e.type is not T.INTERIM_TRANSCRIPT] == [
        T.START_OF_SPEECH,
        T.FINAL_TRANSCRIPT,
        T.END_OF_SPEECH,
        T.RECOGNITION_USAGE,
    ]
    assert finals(events)[0].alternatives[0].text == "w0 w1"
    usage = [e.recognition_usage.audio_duration for e in events if e.recognition_usage]
    assert sum(usage) == pytest.approx(1.2, abs=0.02)


def test_frames_of_any_rate_and_channel_count_are_converted():
    stt = roomscribe.STT(engine=ScriptedEngine())
    pcm = np.full(441 * 2, 300, np.int16).tobytes()  # 10 ms of 44.1 kHz stereo

    async def run():
        stream = stt.stream()
        for _ in range(120):
            stream.push_frame(rtc.AudioFrame(pcm, 44100, 2, 441))
        stream.end_input()
        return [e async for e in stream]

    events = asyncio.run(run())
    assert finals(events)[0].alternatives[0].text == "w0 w1"
    usage = [e.recognition_usage.audio_duration for e in events if e.recognition_usage]
    assert sum(usage) == pytest.approx(1.2, abs=0.02)


def test_options_are_checked_when_given_and_updates_reach_open_streams():
    with pytest.raises(ValueError, match="klingon"):
        roomscribe.STT(language="klingon")
    with pytest.raises(ValueError):
        roomscribe.STT(interim_interval=-1)
    stt = roomscribe.STT(engine=ScriptedEngine(), language="en-US")

    async def run():
        first = stt.stream()
        assert first._opts.language == "en"
        # An agent cannot take a final back: the plugin's streams never revise one.
        assert first._opts.stream_config().revise_finals is False
        await first.aclose()
        stream = stt.stream(language="auto")
        assert stream._opts.language is None
        with pytest.raises(ValueError, match="nonsense"):
            stt.stream(language="nonsense")
        for frame in silence_48k(0.6):
            stream.push_frame(frame)
        await asyncio.sleep(0.1)  # the run has started
        stt.update_options(language="Korean", interim_interval=2.0)
        assert stream._opts.language == "ko" and stream._speaker.language == "ko"
        assert stream._throttle.interval == 2.0
        with pytest.raises(ValueError):
            stream.update_options(language="nonsense")
        stream.end_input()
        events = [e async for e in stream]
        last = stt.stream(language="ja")
        assert last._opts.language == "ja" and stt._opts.language == "ko"
        await last.aclose()
        return events

    events = asyncio.run(run())
    assert [e.alternatives[0].text for e in finals(events)] == ["w0"]  # the old stream's sentence ends


def test_a_flush_with_nothing_left_is_acknowledged_with_an_empty_final():
    stt = roomscribe.STT(engine=ScriptedEngine())

    async def run():
        stream = stt.stream()
        stream.flush()
        stream.end_input()  # its own flush is not acknowledged
        return [e async for e in stream]

    events = asyncio.run(run())
    assert [e.type for e in events] == [T.FINAL_TRANSCRIPT]
    assert events[0].alternatives[0].text == ""


def test_throttled_interims_keep_the_latest_text():
    # A word every 0.5 s of audio pushed at 1x, interims at most every 1.2 s: some are
    # held back, and the one that goes out when the interval has passed is the newest.
    stt = roomscribe.STT(engine=ScriptedEngine(step_seconds=0.05), interim_interval=1.2)
    result = asyncio.run(run_stream(stt, silence_48k(4.0), realtime=True))
    interims = [e.alternatives[0].text for e in result["events"] if e.type is T.INTERIM_TRANSCRIPT]
    assert 2 <= len(interims) <= 4
    words = [int(t.split()[-1][1:]) for t in interims]
    assert words == sorted(words) and words[-1] >= 3


def test_capabilities_and_labels():
    stt = roomscribe.STT(engine=ScriptedEngine())
    caps = stt.capabilities
    assert (
        caps.streaming,
        caps.interim_results,
        caps.aligned_transcript,
        caps.offline_recognize,
        caps.diarization,
        caps.manual_flush,
    ) == (True, True, "word", True, False, True)
    assert stt.model == "scripted" and stt.provider == "roomscribe"
    assert roomscribe.__version__ == roomscribe_package.__version__  # one version for both
    assert roomscribe.STT(model="tiny.en").model == "tiny.en"  # nothing is loaded yet
    with pytest.raises(ValueError):
        roomscribe.STT(policy="nonsense")


def test_instances_share_one_engine_and_one_worker(monkeypatch):
    built = []

    class CountingEngine(ScriptedEngine):
        def __init__(self, config):
            super().__init__()
            built.append(config.model)

    monkeypatch.setattr(scheduler, "_engines", {})
    monkeypatch.setattr(scheduler, "Engine", CountingEngine)
    first, second, other = (roomscribe.STT(model="m1"), roomscribe.STT(model="m1"), roomscribe.STT(model="m2"))

    async def engines():
        return await asyncio.gather(first._get_engine(), second._get_engine(), other._get_engine())

    a, b, c = asyncio.run(engines())
    assert a is b and a is not c and built == ["m1", "m2"]
    assert roomscribe.worker_for(a) is roomscribe.worker_for(b)
    given = ScriptedEngine()
    assert roomscribe.worker_for(roomscribe.STT(engine=given).engine) is roomscribe.worker_for(given)


class FailingEngine(ScriptedEngine):
    def __init__(self):
        super().__init__()
        self.fail = True

    def step(self, streams):
        if self.fail:
            raise RuntimeError("out of memory")
        return super().step(streams)


def test_a_failed_model_call_ends_the_stream_with_an_api_error_and_spares_the_worker():
    from livekit.agents import APIConnectionError, APIConnectOptions

    engine = FailingEngine()
    stt = roomscribe.STT(engine=engine)

    async def run():
        stream = stt.stream(conn_options=APIConnectOptions(max_retry=0))
        for frame in silence_48k(1.2):
            stream.push_frame(frame)
        stream.end_input()
        return [e async for e in stream]

    with pytest.raises(APIConnectionError):
        asyncio.run(run())
    engine.fail = False  # the same worker thread serves the next stream
    assert [e.alternatives[0].text for e in finals(asyncio.run(run()))] == ["w0 w1"]


class PoisonEngine(ScriptedEngine):
    """Fails any model call that includes the first stream opened (a window that breaks the model)."""

    def __init__(self):
        super().__init__(step_seconds=0.05)
        self.opened: list[ScriptedStream] = []

    def open_stream(self, config):
        self.opened.append(ScriptedStream())
        return self.opened[-1]

    def step(self, streams):
        if any(s is self.opened[0] and s.ready() for s in streams):
            raise ValueError("this window breaks the model")
        return super().step(streams)


def test_a_stream_that_breaks_a_batched_call_fails_alone():
    engine = PoisonEngine()
    worker = scheduler.EngineWorker(engine)  # its thread idles: no commands are sent
    got: dict[str, list] = {"poisoned": [], "healthy": []}
    handles = {}
    for name in ("poisoned", "healthy"):
        handle = scheduler.StreamHandle(config=None, deliver=lambda h, item, n=name: got[n].append(item) or True)
        handle.stream = engine.open_stream(None)
        handle.stream.push(np.zeros(16000, np.float32))  # both ready: one batched call
        handles[name] = handle
        worker._handles.append(handle)
    worker._step()
    assert [type(i).__name__ for i in got["poisoned"]] == ["Failure"]
    assert got["healthy"] and not any(isinstance(i, scheduler.Failure) for i in got["healthy"])
    assert worker._handles == [handles["healthy"]]
