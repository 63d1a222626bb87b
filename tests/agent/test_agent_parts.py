"""Caption agent parts: caption delivery order, job options, control parsing, load, the LiveKit wire shape."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from roomscribe.agent.captions import CaptionPublisher
from roomscribe.agent.options import CaptionOptions
from roomscribe.agent.room import ROOM_CONTROLS
from roomscribe.session import Caption, ControlError, OptionsError, Pause, Resume, SetLanguage, parse_control


def caption(text: str, final: bool = False, segment: str = "SG_1", track: str = "TR_a") -> Caption:
    return Caption(participant="alice", track=track, segment_id=segment, text=text, final=final, language="en")


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
            if c.track == "TR_slow":
                await blocked.wait()
            sent.append(c.track)

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


def test_an_update_with_nothing_to_show_is_not_sent_but_an_empty_final_clears_a_shown_interim():
    async def scenario():
        sent: list[Caption] = []

        async def send(c: Caption) -> None:
            sent.append(c)

        pub = CaptionPublisher(send)
        pub.publish(caption("", segment="SG_1"))  # speech started, no words yet
        pub.publish(caption("", final=True, segment="SG_1"))
        await pub.aclose()
        pub.publish(Caption(participant="alice", track="TR_a", segment_id="SG_2", text="", tail="uh"))
        await pub.aclose()
        pub.publish(caption("", final=True, segment="SG_2"))  # the tail was dropped: the interim must go
        await pub.aclose()
        return sent

    sent = asyncio.run(scenario())
    assert [(c.segment_id, c.shown, c.final) for c in sent] == [("SG_2", "uh", False), ("SG_2", "", True)]


def test_a_final_retracted_by_a_second_hearing_is_sent_with_no_text():
    async def scenario():
        sent: list[Caption] = []

        async def send(c: Caption) -> None:
            sent.append(c)

        pub = CaptionPublisher(send)
        pub.publish(caption("Pips.", final=True, segment="SG_3"))
        pub.publish(dataclasses.replace(caption("", final=True, segment="SG_3"), revised=True))
        await pub.aclose()
        return sent

    sent = asyncio.run(scenario())
    assert [(c.segment_id, c.text, c.final) for c in sent] == [("SG_3", "Pips.", True), ("SG_3", "", True)]


def test_job_metadata_overrides_environment_defaults():
    base = CaptionOptions.from_env({"ROOMSCRIBE_LANGUAGE": "en", "ROOMSCRIBE_INTERIMS_PER_SECOND": "2"})
    assert (base.language, base.interims_per_second, base.interim_interval) == ("en", 2.0, 0.5)
    opts = base.with_metadata(
        '{"language": "ko", "participant_languages": {"sam": "en-GB", "kim": "auto"},'
        ' "policy": "AlignAtt", "interims_per_second": 0, "unrelated": 1}'
    )
    assert opts.language == "ko"
    assert opts.participant_languages == {"sam": "en", "kim": None}
    assert opts.policy == "alignatt"
    assert opts.interim_interval == float("inf")
    assert base.with_metadata("") is base


def test_the_room_record_goes_to_the_jobs_tenant_or_the_configured_one():
    assert (CaptionOptions().tenant, CaptionOptions().record) == ("local", True)
    base = CaptionOptions.from_env({"ROOMSCRIBE_TENANT": "acme", "ROOMSCRIBE_RECORDS": "off"})
    assert (base.tenant, base.record) == ("acme", False)
    opts = base.with_metadata('{"tenant": "globex", "record": true}')
    assert (opts.tenant, opts.record) == ("globex", True)


@pytest.mark.parametrize(
    "metadata, message",
    [
        ("{", "not JSON"),
        ("[]", "JSON object"),
        ('{"language": "xx"}', "not a language"),
        ('{"language": 7}', "language code"),
        ('{"policy": "greedy"}', "policy must be one of"),
        ('{"interims_per_second": "fast"}', "must be a number"),
        ('{"interims_per_second": 500}', "between 0 and 50"),
        ('{"participant_languages": ["ko"]}', "map identities"),
        ('{"tenant": "../acme"}', "tenant"),
        ('{"record": "yes"}', "record must be true or false"),
    ],
)
def test_bad_job_metadata_is_an_error_that_names_the_field(metadata, message):
    with pytest.raises(OptionsError, match=message):
        CaptionOptions().with_metadata(metadata)


def test_control_messages_parse():
    def parse(payload: bytes):
        return parse_control(payload, accepted=ROOM_CONTROLS)

    assert parse(b'{"type": "pause"}') == Pause()
    assert parse(b'{"type": "resume"}') == Resume()
    assert parse(b'{"type": "set_language", "participant": "kim", "language": "ko"}') == SetLanguage("ko", "kim")
    assert parse(b'{"type": "set_language", "participant": "kim", "language": null}') == SetLanguage(None, "kim")
    for payload in (b'{"type": "reboot"}', b'{"type": "stop"}'):  # a room cannot be stopped by a participant
        with pytest.raises(ControlError, match=r"\(known here: pause, resume, set_language, set_translation\)"):
            parse(payload)


def test_load_is_the_highest_of_open_tracks_model_busy_share_and_slowdown():
    from types import SimpleNamespace

    from roomscribe.agent.capacity import Capacity
    from roomscribe.session.governor import LagGovernor
    from roomscribe.session.scheduler import BusyMeter

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
    from roomscribe.agent.capacity import Capacity

    monkeypatch.setenv("ROOMSCRIBE_MAX_TRACKS", "5")
    assert Capacity().calibrate(engine) == 5
    monkeypatch.delenv("ROOMSCRIBE_MAX_TRACKS")
    measured = Capacity().calibrate(engine)
    assert isinstance(measured, int) and measured >= 1


def test_a_caption_carries_how_far_it_trails_the_audio_given_to_its_stream():
    # The lag is the engine's own measure, carried by the session caption: the agent sends it
    # as it is (a lag of its own making would differ: these captions start and end at 0 s).
    from types import SimpleNamespace

    from roomscribe.agent.livekit_room import ATTRIBUTE_LAG, LiveKitCaptionSender
    from roomscribe.agent.room import Participant, RoomCaptioner
    from support.fake_speech import FakeSpeaker, FrameFeed

    streams: list[tuple[dict, list[str]]] = []

    class Writer:
        def __init__(self, attributes):
            self.chunks: list[str] = []
            streams.append((attributes, self.chunks))

        async def write(self, text):
            self.chunks.append(text)

        async def aclose(self):
            pass

    async def stream_text(*, topic, sender_identity, attributes):
        assert (topic, sender_identity) == ("lk.transcription", "alice")
        return Writer(attributes)

    room = SimpleNamespace(isconnected=lambda: True, local_participant=SimpleNamespace(stream_text=stream_text))
    speakers: list[FakeSpeaker] = []

    def make_speaker(**how):
        speakers.append(FakeSpeaker(lag=1.37, **how))
        return speakers[-1]

    async def scenario():
        captioner = RoomCaptioner(CaptionOptions(), make_speaker, LiveKitCaptionSender(room, legacy="never"))
        feed = FrameFeed()
        captioner.add_track(Participant("alice"), "TR_a", feed)
        feed.put("hello", ".")
        await asyncio.sleep(0.01)
        await captioner.aclose()

    asyncio.run(scenario())
    (final,) = [c for c in speakers[0].sent if c.final]
    [(attributes, text)] = [(a, t) for a, t in streams if a["lk.transcription_final"] == "true"]
    assert "".join(text) == "hello" and final.start == final.end == 0.0
    assert attributes[ATTRIBUTE_LAG] == f"{final.lag:.2f}" == "1.37"


def test_a_caption_of_a_voice_within_a_track_names_it_in_roomscribe_speaker():
    from types import SimpleNamespace

    from roomscribe.agent.livekit_room import ATTRIBUTE_SPEAKER, LiveKitCaptionSender
    from roomscribe.session import Caption

    sent: list[dict] = []

    class Writer:
        async def write(self, text):
            pass

        async def aclose(self):
            pass

    async def stream_text(*, topic, sender_identity, attributes):
        sent.append({"sender": sender_identity, **attributes})
        return Writer()

    room = SimpleNamespace(isconnected=lambda: True, local_participant=SimpleNamespace(stream_text=stream_text))
    sender = LiveKitCaptionSender(room, legacy="never")

    async def scenario():
        await sender(Caption("caller", "SG_1", "Press two.", final=True, track="TR_c", speaker="S2"))
        await sender(Caption("alice", "SG_2", "Hello.", final=True, track="TR_a"))

    asyncio.run(scenario())
    assert sent[0]["sender"] == "caller" and sent[0][ATTRIBUTE_SPEAKER] == "S2"
    assert ATTRIBUTE_SPEAKER not in sent[1]


def test_a_translation_goes_out_as_its_own_stream_with_its_own_segment_id_tied_to_the_caption():
    from types import SimpleNamespace

    from roomscribe.agent.livekit_room import LiveKitCaptionSender
    from roomscribe.session import Caption

    sent: list[tuple[dict, str]] = []

    class Writer:
        def __init__(self, attributes):
            self.attributes = attributes

        async def write(self, text):
            sent.append((self.attributes, text))

        async def aclose(self):
            pass

    async def stream_text(*, topic, sender_identity, attributes):
        assert topic == "lk.transcription" and sender_identity == "alice"
        return Writer(attributes)

    room = SimpleNamespace(isconnected=lambda: True, local_participant=SimpleNamespace(stream_text=stream_text))
    sender = LiveKitCaptionSender(room, legacy="never")
    caption = Caption("alice", "SG_1", "Good morning.", final=True, track="TR_a", language="en", lag=2.5)
    both = {"ko": "좋은 아침입니다.", "fr": "Bonjour."}
    translated = dataclasses.replace(caption, translations=both, translated=("ko",))

    async def scenario():
        await sender(caption)
        await sender(translated)

    asyncio.run(scenario())
    (original, _), (attributes, text) = sent
    assert text == "좋은 아침입니다."
    assert attributes == {
        "lk.transcribed_track_id": "TR_a",
        "lk.segment_id": "SG_1-ko",  # its own: frontends keep one entry per segment id
        "roomscribe.caption_segment_id": "SG_1",
        "lk.transcription_final": "true",
        "roomscribe.language": "ko",
        "roomscribe.translation_of": "en",
        "roomscribe.lag": "2.50",
    }
    assert original["roomscribe.language"] == "en" and "roomscribe.translation_of" not in original


def test_translation_metrics_say_how_far_translations_trail_and_whether_they_fail():
    from prometheus_client import CollectorRegistry, generate_latest

    from roomscribe.agent.metrics import TranslationCollector
    from roomscribe.translation import TranslationJob, TranslationRequest, TranslationService
    from support.translators import ScriptedTranslator

    translator = ScriptedTranslator(delay=0.01)
    service = TranslationService(translator)

    async def scenario():
        service.submit(TranslationJob(("s", 1, "ko"), TranslationRequest("hello", "en", "ko"), lambda t, w: None))
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    registry = CollectorRegistry()
    registry.register(TranslationCollector(lambda: service))
    text = generate_latest(registry).decode()
    assert 'roomscribe_translations_translated_total{backend="scripted"} 1.0' in text
    assert 'roomscribe_translation_failing{backend="scripted"} 0.0' in text
    assert 'roomscribe_translation_lag_seconds{backend="scripted",quantile="0.5"}' in text
    empty = CollectorRegistry()
    empty.register(TranslationCollector(lambda: None))
    assert "roomscribe_translation" not in generate_latest(empty).decode()
