"""A room's meeting record end to end: two caption workers, one after the other (the first
leaves, a second is dispatched to the same room session, in another process), write one
meeting in a shared PostgreSQL; the meetings API exports it in every format."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import urllib.request

import pytest

pytest.importorskip("aiortc")
pytest.importorskip("psycopg")

from emulator import Emulator
from roomscribe.agent import worker as agent_worker
from roomscribe.agent.worker import build_server
from roomscribe.store import open_store
from roomscribe.web.config import ServerConfig
from support.serving import running_server
from support.speech import read_audio, wer

API_KEY, API_SECRET = "devkey", "roomscribe-test-secret-0123456789abcdef"
TOPIC = "lk.transcription"
FINAL = {"lk.transcription_final": "true"}
CLIPS = {"alice": "LJ001-0001", "bob": "LJ001-0159"}


def speech(eval_dir, name: str):
    import numpy as np

    audio = read_audio(eval_dir / f"asr/en/ljspeech/{name}.flac")
    return np.concatenate([audio, np.zeros(int(1.5 * 16000), np.float32)])


def delivered(emu, identity: str) -> dict[str, str]:
    """The finals the room received of a speaker: segment id -> its latest text (a segment a
    second hearing retracted, whose latest final has no text, is left out)."""
    shown: dict[str, str] = {}
    for record in sorted(emu.recorder.streams(TOPIC, sender_identity=identity, **FINAL), key=lambda r: r.done_at):
        shown[record.attributes["lk.segment_id"]] = record.text
    return {segment_id: text for segment_id, text in shown.items() if text.strip()}


def test_two_workers_of_one_room_session_write_one_meeting_exported_in_every_format(
    emulator_host, eval_dir, manifest, engine, postgres_server, monkeypatch, tmp_path
):
    database = postgres_server.create_database()
    monkeypatch.setenv("ROOMSCRIBE_DATABASE", database)
    monkeypatch.setenv("ROOMSCRIBE_EMPTY_TIMEOUT", "30")
    monkeypatch.setenv("ROOMSCRIBE_MAX_TRACKS", "8")
    monkeypatch.setattr(agent_worker, "_records", [])  # this process's records: opened from the env above
    metadata = json.dumps({"language": "en", "tenant": "acme"})

    async def scenario():
        async with Emulator(emulator_host, api_key=API_KEY, api_secret=API_SECRET) as emu:
            # The first worker, in this process, captions alice, then goes away.
            first = build_server(ws_url=emu.url, api_key=API_KEY, api_secret=API_SECRET, port=0)
            run = asyncio.create_task(first.run(devmode=False))
            await emu.recorder.wait_for(lambda _: emu.workers, 30)
            assert len(emu.workers) == 1
            await emu.add_speaker("board", "alice", speech(eval_dir, CLIPS["alice"]))
            await (await emu.create_dispatch("board", "roomscribe", metadata)).wait()
            await emu.recorder.wait_for(lambda _: delivered(emu, "alice"), 60)
            await asyncio.sleep(4.0)  # alice's last final
            await first.aclose()
            await asyncio.gather(run, return_exceptions=True)
            room_sid = emu.rooms["board"].sid

            # A second worker, another process on the same database, is dispatched to the
            # same room session and captions bob.
            env = dict(
                os.environ,
                LIVEKIT_URL=emu.url,
                LIVEKIT_API_KEY=API_KEY,
                LIVEKIT_API_SECRET=API_SECRET,
                ROOMSCRIBE_HEALTH_PORT="0",
            )
            log = open(tmp_path / "second.log", "w")
            second = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "from roomscribe.cli import main; main()",
                "start",
                env=env,
                stdout=log,
                stderr=log,
            )
            try:
                await emu.recorder.wait_for(lambda _: any(w.connected for w in emu.workers.values()), 90)
                await asyncio.sleep(1.0)
                await emu.add_speaker("board", "bob", speech(eval_dir, CLIPS["bob"]))
                await (await emu.create_dispatch("board", "roomscribe", metadata)).wait()
                await emu.recorder.wait_for(lambda _: delivered(emu, "bob"), 90)
                await asyncio.sleep(4.0)
            finally:
                second.terminate()
                try:
                    await asyncio.wait_for(second.wait(), 30)
                except TimeoutError:
                    second.kill()
                log.close()
            return {who: delivered(emu, who) for who in CLIPS}, room_sid

    try:
        received, room_sid = asyncio.run(scenario())
    except TimeoutError:
        pytest.fail("the second worker captioned nothing:\n" + (tmp_path / "second.log").read_text()[-3000:])

    with open_store(database) as store:
        meetings = store.list_meetings("acme")
        assert [m.id for m in meetings] == [room_sid]  # one meeting, named by the room session
        assert store.list_meetings("local") == []
        segments = {s.segment_id: s for s in store.segments("acme", room_sid)}
    # Every final the room received is stored, as it was received, by whichever worker sent it.
    for who, finals in received.items():
        assert finals, who
        for segment_id, text in finals.items():
            assert segments[segment_id].text == text and segments[segment_id].participant == who
        spoken = " ".join(s.text for s in sorted(segments.values(), key=lambda s: s.start) if s.participant == who)
        assert wer(manifest[f"asr/en/ljspeech/{CLIPS[who]}.flac"]["reference_text"], spoken) < 0.3
    alice_end = max(s.end for s in segments.values() if s.participant == "alice")
    assert min(s.start for s in segments.values() if s.participant == "bob") > alice_end  # one meeting clock

    with running_server(engine, ServerConfig(port=0, database=database)) as server:

        def get(path: str) -> str:
            request = urllib.request.Request(server.url + path, headers={"X-Roomscribe-Tenant": "acme"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.read().decode()

        document = json.loads(get(f"/meetings/{room_sid}"))
        assert document["total_speakers"] == 2 and set(document["speakers"]) == {"alice", "bob"}
        assert document["source"] == "livekit" and document["title"] == "board"
        exports = {
            fmt: get(f"/meetings/{room_sid}/transcript?format={fmt}") for fmt in ("txt", "srt", "vtt", "json", "rttm")
        }
    assert exports["txt"].startswith("alice: ") and "\nbob: " in exports["txt"]
    assert exports["srt"].startswith("1\n00:00:") and " --> " in exports["srt"]
    assert exports["vtt"].startswith("WEBVTT\n\n") and "bob: " in exports["vtt"]
    assert json.loads(exports["json"])["total_segments"] == len(segments)
    rttm = [line.split() for line in exports["rttm"].splitlines()]
    assert {fields[7] for fields in rttm} == {"alice", "bob"} and all(fields[1] == room_sid for fields in rttm)
