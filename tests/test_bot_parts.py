"""Caption bot parts: caption delivery order, job options, control parsing, the LiveKit wire shape."""

from __future__ import annotations

import asyncio

import pytest

from roomscribe.bot.captions import Caption, CaptionPublisher
from roomscribe.bot.control import ControlError, Pause, Resume, SetLanguage, parse_control
from roomscribe.bot.options import CaptionOptions, OptionsError


def caption(text: str, final: bool = False, segment: str = "SG_1", track: str = "TR_a") -> Caption:
    return Caption(identity="alice", track_sid=track, segment_id=segment, text=text, final=final, language="en")


def test_newer_interim_replaces_a_queued_one_while_a_send_is_slow_and_finals_all_arrive():
    async def scenario():
        sent: list[Caption] = []
        gate = asyncio.Event()

        async def send(c: Caption) -> None:
            if not sent:
                await gate.wait()  # the first send is stuck on a slow link
            sent.append(c)

        pub = CaptionPublisher(send)
        pub.publish(caption("a"))
        await asyncio.sleep(0)
        for text in ("a b", "a b c", "a b c d"):
            pub.publish(caption(text))
        pub.publish(caption("a b c d.", final=True))
        pub.publish(caption("e", segment="SG_2"))
        gate.set()
        await pub.aclose()
        return sent

    sent = asyncio.run(scenario())
    assert [(c.text, c.final) for c in sent] == [("a", False), ("a b c d.", True), ("e", False)]


def test_failed_final_send_is_retried_and_not_lost():
    async def scenario():
        attempts = []

        async def send(c: Caption) -> None:
            attempts.append(c.text)
            if len(attempts) < 3:
                raise ConnectionError("link down")

        pub = CaptionPublisher(send)
        pub.publish(caption("done.", final=True))
        await pub.aclose()
        return attempts, pub

    attempts, pub = asyncio.run(scenario())
    assert attempts == ["done."] * 3
    assert pub.sent_finals == 1 and pub.failed_finals == 0


def test_tracks_are_delivered_independently():
    async def scenario():
        sent = []
        blocked = asyncio.Event()

        async def send(c: Caption) -> None:
            if c.track_sid == "TR_slow":
                await blocked.wait()
            sent.append(c.track_sid)

        pub = CaptionPublisher(send)
        pub.publish(caption("x", final=True, track="TR_slow"))
        pub.publish(caption("y", final=True, track="TR_fast"))
        await asyncio.sleep(0.01)
        first = list(sent)
        blocked.set()
        await pub.aclose()
        return first, sent

    first, sent = asyncio.run(scenario())
    assert first == ["TR_fast"]
    assert sent == ["TR_fast", "TR_slow"]


def test_job_metadata_overrides_environment_defaults():
    base = CaptionOptions.from_env({"ROOMSCRIBE_LANGUAGE": "en", "ROOMSCRIBE_INTERIMS_PER_SECOND": "2"})
    assert (base.language, base.interims_per_second, base.interim_interval) == ("en", 2.0, 0.5)
    opts = base.with_metadata('{"language": "ko", "participant_languages": {"sam": "en-GB", "kim": "auto"},'
                              ' "policy": "AlignAtt", "interims_per_second": 0, "unrelated": 1}')
    assert opts.language == "ko"
    assert opts.participant_languages == {"sam": "en", "kim": None}
    assert opts.policy == "alignatt"
    assert opts.interim_interval == float("inf")
    assert base.with_metadata("") is base


@pytest.mark.parametrize("metadata, message", [
    ("{", "not JSON"),
    ("[]", "JSON object"),
    ('{"language": "xx"}', "not a language"),
    ('{"language": 7}', "language code"),
    ('{"policy": "greedy"}', "policy must be one of"),
    ('{"interims_per_second": "fast"}', "must be a number"),
    ('{"interims_per_second": 500}', "between 0 and 50"),
    ('{"participant_languages": ["ko"]}', "map identities"),
])
def test_bad_job_metadata_is_an_error_that_names_the_field(metadata, message):
    with pytest.raises(OptionsError, match=message):
        CaptionOptions().with_metadata(metadata)


def test_control_messages_parse():
    assert parse_control(b'{"type": "pause"}') == Pause()
    assert parse_control(b'{"type": "resume"}') == Resume()
    assert parse_control(b'{"type": "set_language", "participant": "kim", "language": "ko"}') == SetLanguage("kim", "ko")
    assert parse_control(b'{"type": "set_language", "participant": "kim", "language": null}') == SetLanguage("kim", None)
    with pytest.raises(ControlError, match="unknown control message type"):
        parse_control(b'{"type": "reboot"}')


def test_load_is_the_highest_of_open_tracks_model_busy_share_and_slowdown():
    from types import SimpleNamespace

    from roomscribe.bot.capacity import Capacity
    from roomscribe.engine.governor import LagGovernor
    from roomscribe.scheduler import BusyMeter

    capacity = Capacity(max_tracks=8)
    meter = BusyMeter(window=5.0)
    governor = LagGovernor()
    capacity.watch(SimpleNamespace(busy=meter, governor=governor))
    assert capacity.load() == 0.0
    for _ in range(2):
        capacity.track_opened()
    assert capacity.load() == 0.25
    import time

    now = time.monotonic()
    meter.record(now - 3.0, now - 1.0)  # the model was busy 2 s of the last 5
    assert abs(capacity.load() - 0.4) < 0.05
    governor.level = 1  # streams slowed down: nearly full, whatever the track count
    assert capacity.load() == 0.8
    governor.level = 2
    assert capacity.load() >= 0.95
    governor.level = 0
    for _ in range(20):
        capacity.track_opened()
    assert capacity.load() == 1.0
    for _ in range(30):
        capacity.track_closed()
    assert capacity.open_tracks == 0


def test_capacity_is_measured_from_the_model_unless_set(engine, monkeypatch):
    from roomscribe.bot.capacity import Capacity

    monkeypatch.setenv("ROOMSCRIBE_MAX_TRACKS", "5")
    assert Capacity().calibrate(engine) == 5
    monkeypatch.delenv("ROOMSCRIBE_MAX_TRACKS")
    measured = Capacity().calibrate(engine)
    assert isinstance(measured, int) and measured >= 1


def test_a_caption_carries_how_far_it_trails_the_audio_given_to_its_stream():
    from types import SimpleNamespace

    from livekit.agents import stt

    from roomscribe.bot.track import TrackCaptioner

    class TimedStream:
        """Says 'hello', ending at 1.0 s on its clock, once 2 s of audio are in."""

        def __init__(self):
            self.events: asyncio.Queue = asyncio.Queue()
            self.seconds = 0.0

        def push_frame(self, frame):
            self.seconds += frame.duration
            if abs(self.seconds - 2.0) < 1e-6:
                data = stt.SpeechData(language="en", text="hello", start_time=0.5, end_time=1.0)
                self.events.put_nowait(stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                                                       request_id="SG_1", alternatives=[data]))

        def flush(self):
            pass

        def end_input(self):
            self.events.put_nowait(None)

        def __aiter__(self):
            return self

        async def __anext__(self):
            item = await self.events.get()
            if item is None:
                raise StopAsyncIteration
            return item

        async def aclose(self):
            pass

    async def scenario():
        published: list[Caption] = []

        async def frames():
            for _ in range(50):
                yield SimpleNamespace(duration=0.04)
                await asyncio.sleep(0)

        track = TrackCaptioner(identity="alice", track_sid="TR_a", frames=frames(),
                               open_stream=lambda language: TimedStream(), publish=published.append)
        track.start()
        await asyncio.sleep(0.2)
        await track.close()
        return published

    (final,) = asyncio.run(scenario())
    assert final.final and final.lag == pytest.approx(1.0)
