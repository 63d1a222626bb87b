"""The room layer on the real session speakers and engine: two speakers at once on one shared
model, a speaker who leaves mid-sentence, and a failing stream that is restarted."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

pytest.importorskip("livekit.agents")

from roomscribe.agent.livekit_room import frames_audio
from roomscribe.agent.options import CaptionOptions
from roomscribe.agent.room import Participant, RoomCaptioner
from roomscribe.agent.worker import live_speakers
from roomscribe.session import Caption, worker_for
from support.livekit_frames import frames_48k
from support.speech import read_audio, said_so_far_wer, wer

ALICE = "asr/en/ljspeech/LJ001-0001.flac"
BOB = "asr/en/ljspeech/LJ001-0159.flac"
LATER = "asr/en/ljspeech/LJ001-0009.flac"


# Frames are played this much faster than real time to keep the tests short. More would put
# a small machine behind, and a stream that is behind trades accuracy for lag on purpose.
SPEED = 2


async def play(frames, stop_after: int | None = None, done: asyncio.Event | None = None):
    """48 kHz LiveKit frames (10 ms each) at `SPEED` x real time."""
    for i, frame in enumerate(frames):
        if stop_after is not None and i >= stop_after:
            await asyncio.Event().wait()  # the track goes quiet: the speaker is leaving
        yield frame
        if i % SPEED == 0:
            await asyncio.sleep(0.01)
    if done is not None:
        done.set()


def room_with(engine, options: CaptionOptions | None = None) -> tuple[RoomCaptioner, list[Caption]]:
    sent: list[Caption] = []
    options = options or CaptionOptions()

    async def send(c: Caption) -> None:
        sent.append(c)

    return RoomCaptioner(options, live_speakers(worker_for(engine), options), send), sent


def final_text(sent: list[Caption], who: str, after: float = 0.0) -> str:
    """The captions as they end up: each segment's latest final (a revised one replaces it),
    of the segments that start `after` seconds into the track or later."""
    shown: dict[str, str] = {}
    for c in sent:
        if c.final and c.participant == who and c.start >= after:
            shown[c.segment_id] = c.shown
    return " ".join(shown.values())


def test_two_speakers_share_one_engine_and_each_gets_their_own_words(engine, eval_dir, manifest):
    async def scenario():
        room, sent = room_with(engine)
        for who, clip in (("alice", ALICE), ("bob", BOB)):
            room.add_track(Participant(who), f"TR_{who}", frames_audio(play(frames_48k(read_audio(eval_dir / clip)))))
        await asyncio.sleep(len(read_audio(eval_dir / BOB)) / 16000 / SPEED + 1.0)
        await room.aclose()
        return sent

    sent = asyncio.run(asyncio.wait_for(scenario(), 120))
    for who, clip in (("alice", ALICE), ("bob", BOB)):
        text = final_text(sent, who)
        assert wer(manifest[clip]["reference_text"], text) < 0.2, (who, text)
        assert {c.track for c in sent if c.participant == who} == {f"TR_{who}"}
        segments = {c.segment_id for c in sent if c.participant == who}
        assert all(sid.startswith("SG_") for sid in segments)
        finals = [c for c in sent if c.final and not c.revised and c.participant == who]
        assert len({c.segment_id for c in finals}) == len(finals)  # one final per segment
        revised = {c.segment_id for c in sent if c.revised and c.participant == who}
        assert revised <= {c.segment_id for c in finals}  # a second hearing replaces one of them


def test_speaker_who_leaves_mid_sentence_gets_the_words_said_so_far_as_a_final(engine, eval_dir, manifest):
    audio = read_audio(eval_dir / ALICE)
    frames = frames_48k(audio)
    cut = int(len(frames) * 0.6)

    async def scenario():
        room, sent = room_with(engine)
        room.add_track(Participant("alice"), "TR_alice", frames_audio(play(frames, stop_after=cut)))
        await asyncio.sleep(cut / 100 / SPEED + 0.5)
        await room.remove_track("TR_alice")
        await room.publisher.aclose()
        return room, sent

    room, sent = asyncio.run(asyncio.wait_for(scenario(), 120))
    finals = final_text(sent, "alice")
    assert finals, "no final caption for the speaker who left"
    error, covered = said_so_far_wer(manifest[ALICE]["reference_text"], finals)
    assert error < 0.35 and 0.35 <= covered <= 0.8, (finals, error, covered)  # what was said before leaving
    assert room.tracks == {}


def test_failing_stream_is_restarted_and_other_tracks_are_unaffected(engine, eval_dir, manifest, monkeypatch, caplog):
    # A cold model's first call is slow, and the audio queued meanwhile would be shed under
    # load: warm it first, so the restart's timing is the speaker's, not the model's.
    warm = engine.open_stream()
    warm.push(read_audio(eval_dir / BOB)[: 3 * 16000])
    warm.end()
    while warm.ready():
        engine.step([warm])
    step = engine.step
    broken: list = []  # alice's first engine stream: every model call that serves it fails

    def failing_step(streams):
        for stream in streams:
            if not broken and stream.config.language == "en":
                broken.append(stream)
        if any(stream is broken[0] for stream in streams if broken):
            raise RuntimeError("model exploded")
        return step(streams)

    monkeypatch.setattr(engine, "step", failing_step)
    options = CaptionOptions(participant_languages={"alice": "en"})  # tells alice's stream apart
    # alice's stream fails in her first sentence; her second one comes after a pause.
    first = read_audio(eval_dir / ALICE)
    pause = np.zeros(16000, np.float32)
    alice = np.concatenate([first, pause, read_audio(eval_dir / LATER), pause])

    async def scenario():
        room, sent = room_with(engine, options)
        played = asyncio.Event()
        room.add_track(Participant("alice"), "TR_alice", frames_audio(play(frames_48k(alice), done=played)))
        room.add_track(Participant("bob"), "TR_bob", frames_audio(play(frames_48k(read_audio(eval_dir / BOB)))))
        await played.wait()
        restarts = room.tracks["TR_alice"].speaker.restarts
        await room.aclose()
        return sent, restarts

    with caplog.at_level(logging.ERROR, logger="roomscribe.session"):
        sent, restarts = asyncio.run(asyncio.wait_for(scenario(), 120))
    assert broken and "speaker alice: stream failed (model exploded)" in caplog.text
    assert restarts == 1
    assert wer(manifest[BOB]["reference_text"], final_text(sent, "bob")) < 0.3, final_text(sent, "bob")
    # Captions are on the track's clock: alice's second sentence is captioned in full.
    later = final_text(sent, "alice", after=len(first) / 16000)
    assert wer(manifest[LATER]["reference_text"], later) < 0.3, final_text(sent, "alice")
