"""Room logic of the caption bot against a fake room: tracks, speakers, control, failures."""

from __future__ import annotations

import asyncio
import logging

import pytest

from roomscribe.bot.captions import Caption
from roomscribe.bot.options import CaptionOptions
from roomscribe.bot.room import RoomCaptioner, Speaker
from fake_speech import FakeSpeechStream, FrameFeed


class FakeRoom:
    """What the room layer needs from a room: open streams, send captions."""

    def __init__(self, options: CaptionOptions | None = None, send_error: Exception | None = None):
        self.streams: list[FakeSpeechStream] = []
        self.sent: list[Caption] = []
        self.paused_states: list[bool] = []
        self.send_error = send_error
        self.captioner = RoomCaptioner(options or CaptionOptions(), self.open_stream, self.send,
                                       on_paused=self.paused_states.append)

    def open_stream(self, language, options):
        stream = FakeSpeechStream(language)
        self.streams.append(stream)
        return stream

    async def send(self, caption: Caption) -> None:
        if self.send_error is not None:
            error, self.send_error = self.send_error, None
            raise error
        self.sent.append(caption)

    def join(self, identity: str, track_sid: str, **speaker) -> FrameFeed:
        feed = FrameFeed()
        self.captioner.add_track(Speaker(identity, **speaker), track_sid, feed)
        return feed

    def finals(self, identity: str | None = None) -> list[str]:
        return [c.text for c in self.sent if c.final and identity in (None, c.identity)]


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
        assert c.track_sid == {"alice": "TR_a", "bob": "TR_b"}[c.identity]


def test_interims_and_the_final_of_an_utterance_share_one_segment_id():
    async def scenario():
        room = FakeRoom()
        feed = room.join("alice", "TR_a")
        for word in ("one", "two", "three"):
            feed.put(word)
            await settle()
        feed.put(".", "four", ".")
        await settle()
        return room

    room = run(scenario())
    first = [c for c in room.sent if c.text.startswith("one")]
    assert [c.final for c in first] == [False, False, False, True]
    assert len({c.segment_id for c in first}) == 1
    assert first[-1].text == "one two three"
    second = [c for c in room.sent if c.text == "four"]
    assert second[-1].segment_id != first[0].segment_id


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
    assert len(room.streams) == 2


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
    assert room.streams[0].ended and room.streams[0].closed


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
    assert [c.track_sid for c in room.sent if c.final] == ["TR_1", "TR_2"]


def test_muted_track_pushes_no_audio_and_flushes_its_sentence():
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
    assert room.streams[0].pushed == ["before", "after", "."]
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


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"not json", b"[1, 2]", b'{"type": "explode"}',
                                     b'{"type": "set_language", "participant": "alice", "language": "klingon"}',
                                     b'{"type": "set_language", "language": "ko"}', b"x" * 10000])
def test_malformed_control_message_is_logged_and_ignored(payload, caplog):
    async def scenario():
        room = FakeRoom()
        feed = room.join("alice", "TR_a")
        room.captioner.handle_control("mallory", payload)
        feed.put("still", "working", ".")
        await settle()
        return room

    with caplog.at_level(logging.WARNING, logger="roomscribe.bot"):
        room = run(scenario())
    assert room.finals() == ["still working"]
    assert "ignoring control message from mallory" in caplog.text


def test_set_language_control_restarts_that_speakers_stream_after_finishing_the_sentence():
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
    assert [s.language for s in room.streams] == [None, "ko"]
    assert room.streams[0].ended
    assert room.finals() == ["hello", "annyeong"]
    assert room.sent[-1].language == "ko"


def test_speaker_language_comes_from_attributes_then_metadata_then_job_options():
    options = CaptionOptions(language="en", participant_languages={"dave": "de"})
    room = FakeRoom(options)
    captioner = room.captioner
    captioner.update_speaker(Speaker("attr", attributes={"roomscribe.language": "ko-KR"}, metadata='{"language": "fr"}'))
    captioner.update_speaker(Speaker("meta", metadata='{"language": "fr"}'))
    captioner.update_speaker(Speaker("dave"))
    captioner.update_speaker(Speaker("plain", metadata="not json"))
    captioner.update_speaker(Speaker("auto", attributes={"language": "auto"}))
    assert [captioner.language_of(i) for i in ("attr", "meta", "dave", "plain", "auto")] == ["ko", "fr", "de", "en", None]


def test_failing_stream_is_restarted_and_other_tracks_are_unaffected(caplog):
    async def scenario():
        room = FakeRoom()
        alice, bob = room.join("alice", "TR_a"), room.join("bob", "TR_b")
        for track in room.captioner.tracks.values():
            track._restart_delays = (0.01,)
        alice.put("FAIL")
        bob.put("bob", "fine", ".")
        await asyncio.sleep(0.1)
        alice.put("alice", "again", ".")
        await settle()
        return room

    with caplog.at_level(logging.ERROR, logger="roomscribe.bot"):
        room = run(scenario())
    assert "captioning alice (track TR_a) failed" in caplog.text
    assert room.finals("bob") == ["bob fine"]
    assert room.finals("alice") == ["alice again"]
    assert room.captioner.tracks["TR_a"].restarts == 1


def test_no_interims_are_published_when_the_rate_is_zero():
    async def scenario():
        room = FakeRoom(CaptionOptions(interims_per_second=0))
        room.join("alice", "TR_a").put("a", "b", ".")
        await settle()
        return room

    room = run(scenario())
    assert [(c.text, c.final) for c in room.sent] == [("a b", True)]
