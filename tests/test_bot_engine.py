"""The room layer on the real plugin and engine: two speakers at once on one shared model,
and a speaker who leaves mid-sentence."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("livekit.agents")

from conftest import read_audio, said_so_far_wer  # noqa: E402
from test_plugin import _wer, frames_48k  # noqa: E402

from livekit.plugins.roomscribe import STT  # noqa: E402
from roomscribe.bot.captions import Caption  # noqa: E402
from roomscribe.bot.options import CaptionOptions  # noqa: E402
from roomscribe.bot.room import RoomCaptioner, Speaker  # noqa: E402

ALICE = "asr/en/ljspeech/LJ001-0001.flac"
BOB = "asr/en/ljspeech/LJ001-0159.flac"


async def play(frames, stop_after: int | None = None):
    """Frames at 4x real time (the engine keeps up; the test stays short)."""
    for i, frame in enumerate(frames):
        if stop_after is not None and i >= stop_after:
            await asyncio.Event().wait()  # the track goes quiet: the speaker is leaving
        yield frame
        if i % 4 == 0:
            await asyncio.sleep(0.01)


def room_with(engine) -> tuple[RoomCaptioner, list[Caption]]:
    sent: list[Caption] = []
    stts = {}

    def open_stream(language, options):
        stt = stts.setdefault(options.policy, STT(engine=engine, policy=options.policy))
        return stt.stream()

    async def send(c: Caption) -> None:
        sent.append(c)

    return RoomCaptioner(CaptionOptions(), open_stream, send), sent


def test_two_speakers_share_one_engine_and_each_gets_their_own_words(engine, eval_dir, manifest):
    async def scenario():
        room, sent = room_with(engine)
        for who, clip in (("alice", ALICE), ("bob", BOB)):
            room.add_track(Speaker(who), f"TR_{who}", play(frames_48k(read_audio(eval_dir / clip))))
        await asyncio.sleep(len(read_audio(eval_dir / BOB)) / 16000 / 4 + 1.0)
        await room.aclose()
        return sent

    sent = asyncio.run(asyncio.wait_for(scenario(), 120))
    for who, clip in (("alice", ALICE), ("bob", BOB)):
        text = " ".join(c.text for c in sent if c.final and c.identity == who)
        assert _wer(manifest[clip]["reference_text"], text) < 0.2, (who, text)
        segments = {c.segment_id for c in sent if c.identity == who}
        assert all(sid.startswith("SG_") for sid in segments)
        finals = [c for c in sent if c.final and c.identity == who]
        assert len({c.segment_id for c in finals}) == len(finals)  # one final per segment


def test_speaker_who_leaves_mid_sentence_gets_the_words_said_so_far_as_a_final(engine, eval_dir, manifest):
    audio = read_audio(eval_dir / ALICE)
    frames = frames_48k(audio)
    cut = int(len(frames) * 0.6)

    async def scenario():
        room, sent = room_with(engine)
        room.add_track(Speaker("alice"), "TR_alice", play(frames, stop_after=cut))
        await asyncio.sleep(cut / 100 / 4 + 0.5)
        await room.remove_track("TR_alice")
        await room.publisher.aclose()
        return room, sent

    room, sent = asyncio.run(asyncio.wait_for(scenario(), 120))
    finals = [c.text for c in sent if c.final]
    assert finals, "no final caption for the speaker who left"
    error, covered = said_so_far_wer(manifest[ALICE]["reference_text"], " ".join(finals))
    assert error < 0.35 and 0.35 <= covered <= 0.8, (finals, error, covered)  # what was said before leaving
    assert room.tracks == {}
