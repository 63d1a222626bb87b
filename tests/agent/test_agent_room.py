"""Room logic of the caption agent against a fake room and scripted speakers: tracks,
participants, interims, mute, control, failures."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from roomscribe.agent.options import CaptionOptions
from roomscribe.agent.room import Participant, RoomCaptioner
from roomscribe.session import Caption
from roomscribe.session.options import OptionsError
from support.fake_speech import FakeSpeaker, FrameFeed


class FakeRoom:
    """What the room layer needs from a room: make speakers, send captions."""

    def __init__(self, options: CaptionOptions | None = None, send_error: Exception | None = None):
        self.speakers: list[FakeSpeaker] = []
        self.sent: list[Caption] = []
        self.paused_states: list[bool] = []
        self.send_error = send_error
        self.captioner = RoomCaptioner(
            options or CaptionOptions(), self.make_speaker, self.send, on_paused=self.paused_states.append
        )

    def make_speaker(self, **how) -> FakeSpeaker:
        speaker = FakeSpeaker(**how)
        self.speakers.append(speaker)
        return speaker

    async def send(self, caption: Caption) -> None:
        if self.send_error is not None:
            error, self.send_error = self.send_error, None
            raise error
        self.sent.append(caption)

    def join(self, identity: str, track_sid: str, **participant) -> FrameFeed:
        feed = FrameFeed()
        self.captioner.add_track(Participant(identity, **participant), track_sid, feed)
        return feed

    def finals(self, identity: str | None = None) -> list[str]:
        return [c.shown for c in self.sent if c.final and identity in (None, c.participant)]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=10))


def test_every_participant_is_captioned_under_their_own_identity_and_track():
    async def scenario():
        room = FakeRoom()
        alice, bob = room.join("alice", "TR_a"), room.join("bob", "TR_b")
        alice.put("hello", "there", ".")
        bob.put("good", "morning", ".")
        await settle()
        await room.captioner.aclose()
        return room

    room = run(scenario())
    assert room.finals("alice") == ["hello there"]
    assert room.finals("bob") == ["good morning"]
    for c in room.sent:
        assert c.track == {"alice": "TR_a", "bob": "TR_b"}[c.participant]


def test_interims_and_the_final_of_an_utterance_share_one_segment_id():
    async def scenario():
        room = FakeRoom(CaptionOptions(interims_per_second=50))
        feed = room.join("alice", "TR_a")
        for word in ("one", "two", "three"):
            feed.put(word)
            await asyncio.sleep(0.03)  # longer than the interim interval: every interim goes out
        feed.put(".", "four", ".")
        await settle()
        return room

    room = run(scenario())
    first = [c for c in room.sent if c.shown.startswith("one")]
    assert [c.final for c in first] == [False, False, False, True]
    assert [c.shown for c in first] == ["one", "one two", "one two three", "one two three"]
    assert len({c.segment_id for c in first}) == 1
    second = [c for c in room.sent if c.shown == "four"]
    assert second[-1].segment_id != first[0].segment_id


def test_interims_are_sent_at_most_at_the_rooms_rate_and_the_final_supersedes_a_held_one():
    async def scenario():
        room = FakeRoom(CaptionOptions(interims_per_second=4))
        feed = room.join("alice", "TR_a")
        feed.put("a", "b", "c")
        await settle()
        held = [c.shown for c in room.sent]
        await asyncio.sleep(0.3)  # the interval has passed: the newest held interim goes out
        feed.put("d", ".")
        await settle()
        return room, held

    room, held = run(scenario())
    assert held == ["a"]
    assert [(c.shown, c.final) for c in room.sent] == [("a", False), ("a b c", False), ("a b c d", True)]


def test_late_joiner_gets_its_own_stream_and_captions():
    async def scenario():
        room = FakeRoom()
        room.join("alice", "TR_a").put("early", ".")
        await settle()
        room.join("carol", "TR_c").put("late", "arrival", ".")
        await settle()
        return room

    room = run(scenario())
    assert room.finals("carol") == ["late arrival"]
    assert [s.name for s in room.speakers] == ["alice", "carol"]


def test_participant_who_leaves_mid_sentence_still_gets_a_final_and_state_is_freed():
    async def scenario():
        room = FakeRoom()
        feed = room.join("alice", "TR_a")
        feed.put("I", "was", "saying")
        await settle()
        tasks = room.captioner.remove_participant("alice")
        await asyncio.gather(*tasks)
        await room.captioner.publisher.aclose()
        return room

    room = run(scenario())
    assert room.finals("alice") == ["I was saying"]
    assert room.captioner.tracks == {}
    assert room.speakers[0].finished and room.speakers[0].closed


def test_republished_track_after_unpublish_is_captioned_again():
    async def scenario():
        room = FakeRoom()
        room.join("alice", "TR_1").put("first", ".")
        await settle()
        await room.captioner.remove_track("TR_1")
        room.join("alice", "TR_2").put("second", ".")
        await settle()
        return room

    room = run(scenario())
    assert room.finals("alice") == ["first", "second"]
    assert [c.track for c in room.sent if c.final] == ["TR_1", "TR_2"]


def test_muted_track_decodes_no_audio_and_finalises_its_sentence():
    async def scenario():
        room = FakeRoom()
        feed = room.join("alice", "TR_a")
        feed.put("before")
        await settle()
        room.captioner.set_muted("TR_a", True)
        feed.put("silence", "silence")
        await settle()
        room.captioner.set_muted("TR_a", False)
        feed.put("after", ".")
        await settle()
        return room

    room = run(scenario())
    speaker = room.speakers[0]
    assert speaker.pauses == [True, False]
    assert speaker.pushed == ["before", "after", "."] and speaker.dropped == ["silence", "silence"]
    assert room.finals("alice") == ["before", "after"]


def test_pause_and_resume_control_stop_and_restart_captions_for_the_whole_room():
    async def scenario():
        room = FakeRoom()
        alice, bob = room.join("alice", "TR_a"), room.join("bob", "TR_b")
        room.captioner.handle_control("bob", b'{"type": "pause"}')
        alice.put("not", "captioned", ".")
        bob.put("nor", "this", ".")
        await settle()
        room.captioner.handle_control("bob", b'{"type": "resume"}')
        alice.put("back", ".")
        await settle()
        return room

    room = run(scenario())
    assert room.finals() == ["back"]
    assert room.paused_states == [True, False]
    assert all(s.pauses == [True, False] for s in room.speakers)


def test_a_track_that_joins_a_paused_room_or_muted_is_paused_from_the_start():
    async def scenario():
        room = FakeRoom()
        room.captioner.handle_control("host", b'{"type": "pause"}')
        room.join("alice", "TR_a").put("not", "captioned", ".")
        await settle()
        room.captioner.set_paused(False)
        feed = FrameFeed()
        room.captioner.add_track(Participant("bob"), "TR_b", feed, muted=True)
        feed.put("muted", ".")
        await settle()
        return room

    room = run(scenario())
    assert [s.pauses for s in room.speakers] == [[True, False], [True]]
    assert room.finals() == []


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff\xfe",
        b"not json",
        b"[1, 2]",
        b'{"type": "explode"}',
        b'{"type": "set_language", "participant": "alice", "language": "klingon"}',
        b'{"type": "set_language", "language": "ko"}',
        b'{"type": "stop"}',
        b"x" * 10000,
    ],
)
def test_malformed_control_message_is_logged_and_ignored(payload, caplog):
    async def scenario():
        room = FakeRoom()
        feed = room.join("alice", "TR_a")
        room.captioner.handle_control("mallory", payload)
        feed.put("still", "working", ".")
        await settle()
        return room

    with caplog.at_level(logging.WARNING, logger="roomscribe.agent"):
        room = run(scenario())
    assert room.finals() == ["still working"]
    assert "ignoring control message from mallory" in caplog.text


def test_set_language_control_switches_that_speakers_language_after_finishing_the_sentence():
    async def scenario():
        room = FakeRoom()
        feed = room.join("minji", "TR_m")
        feed.put("hello")
        await settle()
        room.captioner.handle_control("host", b'{"type": "set_language", "participant": "minji", "language": "ko"}')
        feed.put("annyeong", ".")
        await settle()
        return room

    room = run(scenario())
    assert room.speakers[0].languages == [None, "ko"]
    assert room.finals() == ["hello", "annyeong"]
    assert [c.language for c in room.sent if c.final] == ["en", "ko"]


def test_speaker_language_comes_from_attributes_then_metadata_then_job_options():
    options = CaptionOptions(language="en", participant_languages={"dave": "de"})
    room = FakeRoom(options)
    captioner = room.captioner
    captioner.update_participant(
        Participant("attr", attributes={"roomscribe.language": "ko-KR"}, metadata='{"language": "fr"}')
    )
    captioner.update_participant(Participant("meta", metadata='{"language": "fr"}'))
    captioner.update_participant(Participant("dave"))
    captioner.update_participant(Participant("plain", metadata="not json"))
    captioner.update_participant(Participant("auto", attributes={"language": "auto"}))
    languages = [captioner.language_of(i) for i in ("attr", "meta", "dave", "plain", "auto")]
    assert languages == ["ko", "fr", "de", "en", None]


def test_a_track_whose_audio_fails_is_logged_and_other_tracks_are_unaffected(caplog):
    # A failing engine stream is restarted by the speaker: see test_agent_engine.py.
    async def scenario():
        room = FakeRoom()
        alice, bob = room.join("alice", "TR_a"), room.join("bob", "TR_b")
        alice.put("half")
        alice.fail()
        bob.put("bob", "fine")
        await settle()
        bob.put(".")
        await settle()
        assert set(room.captioner.tracks) == {"TR_a", "TR_b"}  # alice's track stays until it goes away
        await room.captioner.aclose()
        return room

    with caplog.at_level(logging.ERROR, logger="roomscribe.agent"):
        room = run(scenario())
    assert "audio of alice (track TR_a) failed" in caplog.text
    assert room.finals("bob") == ["bob fine"]
    assert room.finals("alice") == ["half"]  # what it had said still became final


def test_no_interims_are_published_when_the_rate_is_zero():
    async def scenario():
        room = FakeRoom(CaptionOptions(interims_per_second=0))
        room.join("alice", "TR_a").put("a", "b", ".")
        await settle()
        return room

    room = run(scenario())
    assert [(c.text, c.final) for c in room.sent] == [("a b", True)]


def test_every_speaker_is_told_the_rooms_prompt_and_the_names_of_the_people_in_it():
    async def scenario():
        room = FakeRoom(CaptionOptions(prompt="Subiaco, Jenson"))
        room.join("u_1", "TR_a", name="Alice Kim")
        room.join("u_2", "TR_b", name="Bob")
        room.captioner.update_participant(Participant("u_3"))  # a listener without a name or a track
        alice, bob = room.speakers
        assert alice.prompts[-1] == bob.prompts[-1] == "Subiaco, Jenson, Alice Kim, Bob, u_3"
        await settle()
        await asyncio.gather(*room.captioner.remove_participant("u_2"))
        assert alice.prompts[-1] == "Subiaco, Jenson, Alice Kim, u_3"

        quiet = FakeRoom(CaptionOptions(prompt="Subiaco", participant_names=False))
        quiet.join("u_1", "TR_a", name="Alice Kim")
        assert quiet.speakers[0].prompts == ["Subiaco"]

    run(scenario())


def test_a_prompt_in_job_metadata_is_checked():
    options = CaptionOptions().with_metadata('{"prompt": ["Subiaco", "Jenson"], "participant_names": false}')
    assert (options.prompt, options.participant_names) == ("Subiaco, Jenson", False)
    with pytest.raises(OptionsError, match="prompt"):
        CaptionOptions().with_metadata('{"prompt": 7}')
    with pytest.raises(OptionsError, match="characters"):
        CaptionOptions().with_metadata(json.dumps({"prompt": "x" * 501}))


def test_sip_callers_flagged_participants_and_listed_ones_are_diarized_and_no_one_else():
    async def scenario(options: CaptionOptions):
        room = FakeRoom(options)
        room.join("caller", "TR_c", kind="sip")
        room.join("desk", "TR_d", attributes={"roomscribe.diarize": "true"})
        room.join("front", "TR_f")
        room.join("alice", "TR_a", attributes={"roomscribe.diarize": "no"})
        await room.captioner.aclose()
        return {s.name: s.diarize for s in room.speakers}

    assert run(scenario(CaptionOptions())) == {"caller": True, "desk": True, "front": False, "alice": False}
    listed = CaptionOptions().with_metadata('{"diarize": ["front"]}')
    assert run(scenario(listed)) == {"caller": True, "desk": True, "front": True, "alice": False}
    everyone = CaptionOptions().with_metadata('{"diarize": "all"}')
    assert set(run(scenario(everyone)).values()) == {True}


def test_a_participant_flagged_mid_track_is_diarized_from_then_on_and_unflagged_again():
    async def scenario():
        room = FakeRoom()
        room.join("desk", "TR_d")
        room.join("alice", "TR_a")
        flagged = {"desk": []}
        desk = next(s for s in room.speakers if s.name == "desk")
        for value in ("true", "false"):
            room.captioner.update_participant(Participant("desk", attributes={"roomscribe.diarize": value}))
            flagged["desk"].append(desk.diarize)
        await room.captioner.aclose()
        return flagged, next(s for s in room.speakers if s.name == "alice").diarize

    assert run(scenario()) == ({"desk": [True, False]}, False)


@pytest.mark.parametrize("value", ['"some"', "3", '["a", 1]'])
def test_a_bad_diarize_list_in_job_metadata_is_refused_by_name(value):
    with pytest.raises(OptionsError, match="diarize must be a list of participant identities"):
        CaptionOptions().with_metadata(f'{{"diarize": {value}}}')


# -- translation ----------------------------------------------------------------------------
class TranslatingRoom(FakeRoom):
    """A FakeRoom whose captioner translates on a scripted backend."""

    def __init__(self, options: CaptionOptions, translator=None):
        from roomscribe.translation import TranslationService
        from support.translators import ScriptedTranslator

        self.translator = translator or ScriptedTranslator()
        self.service = TranslationService(self.translator, timeout=0.3)
        self.announced: list[tuple[str, tuple[str, ...]]] = []
        self.notes: list[str] = []  # what the room was told of weak languages, at each announcement
        super().__init__(options)
        self.captioner = RoomCaptioner(
            options,
            self.make_speaker,
            self.send,
            translation=self.service,
            on_translation=self._announce,
        )

    def _announce(self, state: str, languages: tuple[str, ...], note: str) -> None:
        self.announced.append((state, languages))
        self.notes.append(note)

    def translations(self, language: str) -> list[str]:
        return [c.translations[language] for c in self.sent if language in c.translated]


def test_each_speakers_finals_are_translated_into_the_rooms_other_languages():
    async def scenario():
        room = TranslatingRoom(CaptionOptions(translate=("en", "ko"), participant_languages={"minji": "ko"}))
        room.captioner.start_translation()
        alice, minji = room.join("alice", "TR_a"), room.join("minji", "TR_m", name="Minji Kim")
        alice.put("good", "morning", ".")
        minji.put("안녕하세요", ".")
        await settle()
        await room.captioner.aclose()
        return room

    room = run(scenario())
    room.service.close()
    assert room.finals("alice")[0] == "good morning"
    assert room.translations("ko") == ["[ko] good morning"]
    assert room.translations("en") == ["[en] 안녕하세요"]
    (ko,) = [c for c in room.sent if c.translated == ("ko",)]
    (caption,) = [c for c in room.sent if c.final and not c.translated and c.participant == "alice"]
    assert (ko.segment_id, ko.track, ko.participant) == (caption.segment_id, "TR_a", "alice")
    assert all("Minji Kim" in r.glossary for r in room.translator.requests)
    assert room.announced[0] == ("on", ("en", "ko"))
    assert room.translator.prepared == 1  # the model was loaded as the room asked, not at its first caption


def test_set_translation_control_changes_the_rooms_languages_for_every_speaker():
    async def scenario():
        room = TranslatingRoom(CaptionOptions())
        room.captioner.start_translation()
        alice = room.join("alice", "TR_a")
        alice.put("before", ".")
        await settle()
        room.captioner.handle_control("bob", b'{"type": "set_translation", "languages": ["fr", "Spanish"]}')
        alice.put("after", ".")
        await settle()
        await room.service.drain(5)
        room.captioner.handle_control("bob", b'{"type": "set_translation", "languages": []}')
        alice.put("off", "again", ".")
        await settle()
        await room.captioner.aclose()
        return room

    room = run(scenario())
    room.service.close()
    assert [r.text for r in room.translator.requests] == ["after", "after"]
    assert sorted(room.translations("fr") + room.translations("es")) == ["[es] after", "[fr] after"]
    assert room.announced == [("off", ()), ("on", ("fr", "es")), ("off", ())]


def test_a_failing_translator_leaves_captions_flowing_and_the_room_is_told(caplog):
    async def scenario():
        room = TranslatingRoom(CaptionOptions(translate=("ko",)))
        room.captioner.start_translation()
        room.translator.fail = True
        alice = room.join("alice", "TR_a")
        for word in ("one", ".", "two", ".", "three", "."):
            alice.put(word)
            await settle()
            await room.service.drain(5)
        await settle()
        failing = list(room.announced)
        room.translator.fail = False
        alice.put("four", ".")
        await settle()
        await room.service.drain(5)
        await settle()
        await room.captioner.aclose()
        return room, failing

    with caplog.at_level(logging.WARNING, logger="roomscribe.translation"):
        room, failing = run(scenario())
    room.service.close()
    assert room.finals("alice")[:4] == ["one", "two", "three", "four"]
    assert room.translations("ko") == ["[ko] four"]
    assert failing[-1][0].startswith("failing: scripted: the backend is down")
    assert room.announced[-1] == ("on", ("ko",))
    assert "translation failed" in caplog.text


def test_a_room_that_asks_for_translation_where_there_is_none_is_told_why(caplog):
    async def scenario():
        announced = []
        room = FakeRoom()
        captioner = RoomCaptioner(
            CaptionOptions(translate=("ko",)),
            room.make_speaker,
            room.send,
            translation_unavailable="no translator: pip install 'roomscribe[translate]'",
            on_translation=lambda state, languages, note: announced.append((state, languages)),
        )
        captioner.start_translation()
        return announced

    with caplog.at_level(logging.ERROR, logger="roomscribe.agent"):
        announced = run(scenario())
    assert announced == [("unavailable: no translator: pip install 'roomscribe[translate]'", ("ko",))]
    assert "asks for translation" in caplog.text


@pytest.mark.parametrize("value", [["klingon"], "auto", 7])
def test_a_bad_translate_list_in_job_metadata_is_refused_by_name(value):
    with pytest.raises(OptionsError, match="translat"):
        CaptionOptions().with_metadata(json.dumps({"translate": value}))


def test_a_room_that_asks_for_a_language_the_model_is_weak_in_is_told_so(caplog):
    async def scenario():
        room = TranslatingRoom(CaptionOptions(translate=("ko", "es")))
        room.translator.weak_targets = {"ko": "into Korean is rough"}
        room.captioner.start_translation()
        room.captioner.set_translation(("es",))
        await room.captioner.aclose()
        room.service.close()
        return room

    with caplog.at_level(logging.WARNING, logger="roomscribe.agent"):
        room = run(scenario())
    assert room.notes == ["into Korean is rough", ""]
    assert caplog.text.count("into Korean is rough") == 1
