"""A live speaker against a scripted scheduler: captions on the speaker's clock, language
changes and pauses that finish the sentence first, restarts with back-off, finishing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from roomscribe.engine import Event, EventType, StreamConfig
from roomscribe.engine.events import Word
from roomscribe.session import LiveSpeaker, Pipeline
from roomscribe.session.scheduler import Drained, Failure, StreamHandle

SECOND = np.zeros(16000, dtype=np.float32)


class ScriptedEngine:
    """What a speaker asks of the engine itself: whether it can diarize here."""

    def __init__(self, cannot_diarize: Exception | None = None):
        self.cannot_diarize = cannot_diarize

    def check_diarization(self, hints=None):
        if self.cannot_diarize is not None:
            raise self.cannot_diarize


class ScriptedWorker:
    """The scheduler's interface; the test says what each engine stream delivers."""

    def __init__(self, engine: ScriptedEngine | None = None):
        self.engine = engine or ScriptedEngine()
        self.handles: list[StreamHandle] = []
        self.pushed: dict[int, float] = {}
        self.ended: list[StreamHandle] = []
        self.closed: list[StreamHandle] = []

    def open(self, config, deliver, offset=0.0):
        handle = StreamHandle(config=config, deliver=deliver, offset=offset)
        self.handles.append(handle)
        self.pushed[id(handle)] = 0.0
        return handle

    def push(self, handle, audio):
        self.pushed[id(handle)] += len(audio) / 16000

    def end(self, handle):
        self.ended.append(handle)

    def close(self, handle):
        self.closed.append(handle)

    def say(self, handle, text: str, start: float, end: float, final: bool = True, emitted_at: float | None = None):
        kind = EventType.FINAL if final else EventType.INTERIM
        words = [Word(" " + text, start, end)]
        handle.deliver(
            handle,
            Event(
                kind,
                f"SG_{id(handle)}",
                emitted_at if emitted_at is not None else end + 0.5,
                text=text,
                words=words,
                start=start,
                end=end,
                language=handle.config.language,
                segment_final=final,
                segment_text=text,
            ),
        )

    def drained(self, handle):
        handle.deliver(handle, Drained())


async def settle():
    for _ in range(5):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_captions_are_on_the_speakers_clock_and_carry_the_engines_lag():
    async def scenario():
        worker, seen = ScriptedWorker(), []
        speaker = LiveSpeaker(
            worker,
            StreamConfig(language="en"),
            name="ann",
            track="TR_a",
            pipeline=Pipeline(sinks=[seen.append]),
            offset=100.0,
        )
        speaker.push(SECOND)
        (handle,) = worker.handles
        worker.say(handle, "hello.", 0.2, 0.6, emitted_at=1.0)
        await settle()
        return seen

    (caption,) = run(scenario())
    assert caption.participant == "ann" and caption.track == "TR_a" and caption.final
    assert caption.start == pytest.approx(100.2) and caption.end == pytest.approx(100.6)
    assert caption.lag == pytest.approx(0.4)


def test_a_language_change_finishes_the_old_stream_and_the_next_audio_opens_one_in_the_new_language():
    async def scenario():
        worker, seen = ScriptedWorker(), []
        speaker = LiveSpeaker(worker, StreamConfig(language="en"), name="minji", pipeline=Pipeline(sinks=[seen.append]))
        speaker.push(SECOND)
        old = worker.handles[0]
        speaker.set_language("ko")
        assert worker.ended == [old]
        speaker.push(SECOND)
        new = worker.handles[1]
        worker.say(old, "last words.", 0.5, 0.9)  # the old stream still finishes its sentence
        worker.say(new, "안녕하세요.", 0.1, 0.8)
        await settle()
        return new, seen

    new, seen = run(scenario())
    assert new.config.language == "ko" and new.offset == pytest.approx(1.0)
    assert [c.text for c in seen] == ["last words.", "안녕하세요."]
    assert seen[1].start == pytest.approx(1.1)  # the new stream's times follow on


def test_diarization_switched_on_mid_track_finishes_the_old_stream_and_opens_a_diarized_one():
    async def scenario():
        worker = ScriptedWorker()
        speaker = LiveSpeaker(worker, StreamConfig(language="en"), name="desk")
        speaker.push(SECOND)
        speaker.set_diarize(True)
        speaker.push(SECOND)
        speaker.set_diarize(False)
        speaker.push(SECOND)
        return worker

    worker = run(scenario())
    assert [h.config.diarize for h in worker.handles] == [False, True, False]
    assert worker.ended == worker.handles[:2]


def test_diarization_this_process_cannot_do_leaves_the_track_one_speaker(caplog):
    from roomscribe.diarization.extras import DiarizationUnavailableError

    async def scenario():
        worker = ScriptedWorker(ScriptedEngine(DiarizationUnavailableError("it needs torch")))
        speaker = LiveSpeaker(worker, StreamConfig(language="en"), name="desk")
        speaker.push(SECOND)
        speaker.set_diarize(True)
        speaker.push(SECOND)
        return worker

    worker = run(scenario())
    assert [h.config.diarize for h in worker.handles] == [False] and not worker.ended
    assert "desk has several voices, but it needs torch" in caplog.text


def test_paused_audio_is_dropped_after_the_sentence_in_progress_is_finalised():
    async def scenario():
        worker = ScriptedWorker()
        speaker = LiveSpeaker(worker, StreamConfig(), name="ann")
        speaker.push(SECOND)
        first = worker.handles[0]
        speaker.set_paused(True)
        speaker.push(SECOND)
        speaker.push(SECOND)
        assert worker.ended == [first] and len(worker.handles) == 1
        speaker.set_paused(False)
        speaker.push(SECOND)
        return worker, speaker

    worker, speaker = run(scenario())
    assert len(worker.handles) == 2 and worker.handles[1].offset == pytest.approx(3.0)
    assert worker.pushed[id(worker.handles[0])] == pytest.approx(1.0)
    assert speaker.dropped_seconds == pytest.approx(2.0) and speaker.received_seconds == pytest.approx(4.0)


def test_a_failed_stream_is_replaced_after_a_back_off_and_audio_meanwhile_is_dropped():
    async def scenario():
        worker, seen = ScriptedWorker(), []
        speaker = LiveSpeaker(
            worker, StreamConfig(), name="ann", pipeline=Pipeline(sinks=[seen.append]), restart_delays=(0.2, 0.4)
        )
        speaker.push(SECOND)
        worker.handles[0].deliver(worker.handles[0], Failure(RuntimeError("model call failed")))
        await settle()
        speaker.push(SECOND)  # during the back-off
        assert len(worker.handles) == 1
        await asyncio.sleep(0.25)
        speaker.push(SECOND)
        worker.say(worker.handles[1], "back again.", 0.0, 0.5)
        await settle()
        return worker, speaker, seen

    worker, speaker, seen = run(scenario())
    assert len(worker.handles) == 2 and speaker.restarts == 1 and speaker.dropped_seconds == pytest.approx(1.0)
    assert [c.text for c in seen] == ["back again."] and seen[0].start == pytest.approx(2.0)


def test_without_restarts_a_failure_is_reported_to_the_door():
    async def scenario():
        worker, failures = ScriptedWorker(), []
        speaker = LiveSpeaker(worker, StreamConfig(), name="ann", restart_delays=(), on_failure=failures.append)
        speaker.push(SECOND)
        worker.handles[0].deliver(worker.handles[0], Failure(RuntimeError("boom")))
        await settle()
        return failures

    (error,) = run(scenario())
    assert str(error) == "boom"


def test_finish_waits_for_the_last_final_and_a_stream_that_never_drains_is_closed():
    async def scenario():
        worker, seen = ScriptedWorker(), []
        speaker = LiveSpeaker(worker, StreamConfig(), name="ann", pipeline=Pipeline(sinks=[seen.append]))
        speaker.push(SECOND)
        handle = worker.handles[0]

        async def engine_finishes():
            await asyncio.sleep(0.1)
            worker.say(handle, "goodbye.", 0.2, 0.9)
            worker.drained(handle)

        asyncio.get_running_loop().create_task(engine_finishes())
        await speaker.finish(timeout=5)
        texts = [c.text for c in seen]
        stuck = LiveSpeaker(worker, StreamConfig(), name="bob")
        stuck.push(SECOND)
        await stuck.finish(timeout=0.1)
        return texts, worker, stuck

    texts, worker, stuck = run(scenario())
    assert texts == ["goodbye."]
    assert worker.handles[1] in worker.closed  # gave up waiting: the stream is freed
    stuck.push(SECOND)
    assert len(worker.handles) == 2  # a finished speaker takes no more audio
