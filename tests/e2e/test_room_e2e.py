"""The caption agent end to end: a real livekit-agents worker (roomscribe's own) and the real
livekit SDK against the LiveKit protocol emulator, with recorded speech as participants'
Opus tracks. Checks dispatch, the caption wire format, the text, late joiners, leavers,
republished tracks, control messages and the legacy transcription path."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from contextlib import asynccontextmanager

import numpy as np
import pytest

pytest.importorskip("aiortc")

from emulator import Emulator
from roomscribe.agent.worker import build_server
from support.speech import ROOT, read_audio, said_so_far_wer, wer

API_KEY, API_SECRET = "devkey", "roomscribe-test-secret-0123456789abcdef"
TOPIC = "lk.transcription"
FINAL = {"lk.transcription_final": "true"}


@asynccontextmanager
async def caption_room(host: str, monkeypatch):
    """The emulator, with roomscribe's worker registered to it (agent name "roomscribe")."""
    monkeypatch.setenv("ROOMSCRIBE_EMPTY_TIMEOUT", "1")
    monkeypatch.setenv("ROOMSCRIBE_MAX_TRACKS", "12")
    async with Emulator(host, api_key=API_KEY, api_secret=API_SECRET) as emu:
        server = build_server(ws_url=emu.url, api_key=API_KEY, api_secret=API_SECRET, port=0)
        run = asyncio.create_task(server.run(devmode=False))
        try:
            await emu.recorder.wait_for(lambda _: [w for w in emu.workers.values() if w.agent_name == "roomscribe"], 30)
            yield emu
        finally:
            await server.aclose()
            await asyncio.gather(run, return_exceptions=True)


def speech(eval_dir, name: str, pad: float = 1.5) -> np.ndarray:
    audio = read_audio(eval_dir / f"asr/en/ljspeech/{name}.flac")
    return np.concatenate([audio, np.zeros(int(pad * 16000), np.float32)])


def finals_of(emu, identity: str) -> list:
    return emu.recorder.streams(TOPIC, sender_identity=identity, **FINAL)


def caption_text(emu, identity: str) -> str:
    """The captions as a frontend ends up showing them: the latest final of each segment id
    (a revised final replaces the first), in the order the segments began."""
    shown: dict[str, str] = {}
    for record in sorted(finals_of(emu, identity), key=lambda r: r.done_at):
        shown[record.attributes["lk.segment_id"]] = record.text
    return " ".join(shown.values())


def reference(manifest, name: str) -> str:
    return manifest[f"asr/en/ljspeech/{name}.flac"]["reference_text"]


def test_dispatched_bot_captions_every_speaker_in_the_standard_wire_format(
    emulator_host, eval_dir, manifest, monkeypatch
):
    clips = {"alice": "LJ001-0001", "bob": "LJ001-0159", "carol": "LJ001-0085"}

    async def scenario():
        async with caption_room(emulator_host, monkeypatch) as emu:
            speakers = {
                who: await emu.add_speaker("standup", who, speech(eval_dir, clips[who])) for who in ("alice", "bob")
            }
            # Captions switched on the way the README shows: the dispatch script.
            env = dict(os.environ, LIVEKIT_URL=emu.url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
            script = await asyncio.create_subprocess_exec(
                sys.executable,
                str(ROOT / "examples" / "dispatch.py"),
                "start",
                "standup",
                "--language",
                "en",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            output = (await script.communicate())[0].decode()
            assert script.returncode == 0 and "captions requested" in output, output
            dispatch = emu.dispatches[-1]
            await dispatch.wait()
            await asyncio.sleep(3.0)
            # A late joiner whose client is too old for text streams.
            speakers["carol"] = await emu.add_speaker(
                "standup", "carol", speech(eval_dir, clips["carol"]), client_protocol=2
            )
            await emu.recorder.wait_for(lambda r: all(finals_of(emu, who) for who in clips), 60)
            await asyncio.sleep(4.0)  # the rest of each speaker's finals
            worker = emu.workers[dispatch.worker_id]
            return emu, speakers, dispatch, {p.identity: p for p in emu.participants("standup")}, worker

    emu, speakers, dispatch, participants, worker = asyncio.run(scenario())

    # The worker's reported load counted the room's three tracks (capacity 12).
    assert worker.agent_name == "roomscribe"
    assert max(load for _, _, load in worker.updates) >= 3 / 12

    # Dispatch: the worker registered under "roomscribe", took the job, and joined as an agent.
    assert dispatch.state == "assigned" and dispatch.metadata == '{"language": "en"}'
    bot = participants[dispatch.participant_identity]
    assert bot.is_agent and bot.identity.startswith("roomscribe-")

    captions = emu.recorder.streams(TOPIC)
    assert captions
    for rec in captions:
        speaker = speakers[rec.sender_identity]  # sent on behalf of the speaker...
        assert rec.from_identity == bot.identity and rec.generated  # ...by the agent
        assert rec.attributes["lk.transcribed_track_id"] == speaker.track_sid
        assert rec.attributes["lk.segment_id"].startswith("SG_")
        assert rec.attributes["lk.transcription_final"] in ("true", "false")
        assert rec.attributes["roomscribe.language"] == "en"
        assert 0.0 <= float(rec.attributes["roomscribe.lag"]) < 15.0  # how far it trails the speech

    for who in clips:
        by_segment: dict[str, list] = {}
        for rec in sorted(emu.recorder.streams(TOPIC, sender_identity=who), key=lambda r: r.done_at):
            by_segment.setdefault(rec.attributes["lk.segment_id"], []).append(rec)
        for updates in by_segment.values():
            flags = [u.attributes["lk.transcription_final"] for u in updates]
            # Interims, then the final, and perhaps one revised final (a second hearing).
            closed = flags.index("true")
            assert set(flags[closed:]) == {"true"} and len(flags) - closed <= 2, flags
        assert wer(reference(manifest, clips[who]), caption_text(emu, who)) < 0.3, (who, caption_text(emu, who))

    # Legacy packets go out only once a participant below client protocol 3 is in the room.
    legacy = emu.recorder.transcriptions
    assert legacy and all(t.received_at >= speakers["carol"].audio_started_at - 1.0 for t in legacy)
    assert {t.transcribed_participant_identity for t in legacy} <= set(clips)
    assert any(s.final for t in legacy for s in t.segments)


def test_leaver_gets_a_final_and_pause_resume_and_republish_work(
    emulator_host, eval_dir, manifest, monkeypatch, caplog
):
    async def scenario():
        async with caption_room(emulator_host, monkeypatch) as emu:
            await (await emu.create_dispatch("review", "roomscribe")).wait()
            await emu.recorder.wait_for(lambda _: any(p.is_agent for p in emu.participants("review")), 20)
            # dave leaves 5.5 s into a 12 s sentence.
            dave = await emu.add_speaker("review", "dave", speech(eval_dir, "LJ001-0092"), leave_at=5.5)
            await dave.wait_started()
            await asyncio.sleep(5.5)
            await emu.recorder.wait_for(lambda _: finals_of(emu, "dave"), 20)

            # Garbage control is ignored; pause stops captions; a republished track after
            # resume is captioned again.
            await emu.send_data("review", "dave-host", b"\x00not json", "roomscribe.control")
            await emu.send_data("review", "erin", b'{"type": "pause"}', "roomscribe.control")
            await asyncio.sleep(0.5)
            erin = await emu.add_speaker("review", "erin", speech(eval_dir, "LJ001-0001"))
            await erin.wait_started()
            await asyncio.sleep(erin.audio_ends_at - erin.audio_started_at)
            paused_captions = len(emu.recorder.streams(TOPIC, sender_identity="erin"))
            await emu.unpublish("review", "erin")
            await emu.send_data("review", "erin", b'{"type": "resume"}', "roomscribe.control")
            await asyncio.sleep(0.5)
            again = await emu.republish("review", "erin", speech(eval_dir, "LJ001-0159"))
            # A participant who declares their language gets captions in it.
            await emu.add_speaker(
                "review", "frank", speech(eval_dir, "LJ001-0009"), attributes={"roomscribe.language": "de"}
            )
            await emu.recorder.wait_for(lambda _: finals_of(emu, "erin") and finals_of(emu, "frank"), 40)
            await asyncio.sleep(3.0)
            return emu, dave, paused_captions, erin, again

    with caplog.at_level(logging.WARNING, logger="roomscribe.agent"):
        emu, dave, paused_captions, erin, again = asyncio.run(scenario())

    error, covered = said_so_far_wer(reference(manifest, "LJ001-0092"), caption_text(emu, "dave"))
    assert error < 0.4 and 0.25 <= covered <= 0.75, (caption_text(emu, "dave"), error, covered)
    assert max(r.done_at for r in finals_of(emu, "dave")) > dave.audio_started_at + 5.5  # the cut-off sentence
    assert paused_captions == 0
    assert "ignoring control message" in caplog.text and "not JSON" in caplog.text
    erin_finals = finals_of(emu, "erin")
    assert {r.attributes["lk.transcribed_track_id"] for r in erin_finals} == {again.track_sid}
    assert again.track_sid != erin.track_sid
    assert wer(reference(manifest, "LJ001-0159"), caption_text(emu, "erin")) < 0.3
    assert {r.attributes["roomscribe.language"] for r in emu.recorder.streams(TOPIC, sender_identity="frank")} == {"de"}
    assert {r.attributes["roomscribe.language"] for r in emu.recorder.streams(TOPIC, sender_identity="erin")} == {"en"}


def test_roomscribe_connect_joins_a_named_room_without_dispatch(emulator_host, eval_dir, manifest, tmp_path):
    async def scenario():
        async with Emulator(emulator_host, api_key=API_KEY, api_secret=API_SECRET) as emu:
            await emu.add_speaker("allhands", "gina", speech(eval_dir, "LJ001-0009"))
            env = dict(
                os.environ,
                LIVEKIT_URL=emu.url,
                LIVEKIT_API_KEY=API_KEY,
                LIVEKIT_API_SECRET=API_SECRET,
                ROOMSCRIBE_MAX_TRACKS="8",
                ROOMSCRIBE_HEALTH_PORT="0",
            )
            log = open(tmp_path / "connect.log", "w")
            bot = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from roomscribe.cli import main; main()",
                "connect",
                "--room",
                "allhands",
                env=env,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                await emu.recorder.wait_for(lambda _: finals_of(emu, "gina"), 90)
                await asyncio.sleep(2.0)
            finally:
                await emu.delete_room("allhands")
                bot.terminate()
                try:
                    await asyncio.wait_for(bot.wait(), 30)
                except TimeoutError:
                    bot.kill()
                log.close()
            return emu

    try:
        emu = asyncio.run(scenario())
    except TimeoutError:
        pytest.fail("no caption from `roomscribe connect`:\n" + (tmp_path / "connect.log").read_text()[-3000:])
    assert wer(reference(manifest, "LJ001-0009"), caption_text(emu, "gina")) < 0.3
    assert all(r.generated for r in emu.recorder.streams(TOPIC))  # joined as an agent
