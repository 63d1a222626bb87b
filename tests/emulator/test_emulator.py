"""Self-tests of the LiveKit emulator with the real SDK (livekit.rtc) and a real AgentServer.

They need a private network namespace (see conftest.py / README.md) and no Whisper model.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import numpy as np
import pytest

from livekit import api, rtc

from . import Emulator

pytestmark = pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")

ROOM = "r1"


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def tone(seconds: float, freq: float = 440.0, amp: float = 0.3, sr: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


class Client:
    """A real rtc.Room with its events collected for assertions."""

    def __init__(self) -> None:
        self.room = rtc.Room()
        self.events: list[tuple[str, tuple]] = []
        self._changed = asyncio.Event()
        for name in (
            "track_subscribed",
            "track_unsubscribed",
            "track_unpublished",
            "track_muted",
            "track_unmuted",
            "participant_connected",
            "participant_disconnected",
            "data_received",
            "disconnected",
        ):
            self.room.on(name, self._recorder(name))

    def _recorder(self, name: str):
        def _on(*args) -> None:
            self.events.append((name, args))
            self._changed.set()

        return _on

    async def wait(self, name: str, pred=lambda *a: True, timeout: float = 10.0) -> tuple:
        deadline = time.monotonic() + timeout
        while True:
            for ev, args in self.events:
                if ev == name and pred(*args):
                    return args
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {name} event; got {[e for e, _ in self.events]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass


async def join(emu: Emulator, identity: str, *, kind: str = "standard", auto_subscribe: bool = True) -> Client:
    c = Client()
    await c.room.connect(emu.url, emu.token(identity, ROOM, kind=kind), rtc.RoomOptions(auto_subscribe=auto_subscribe))
    return c


async def rms_of(track: rtc.Track, seconds: float, skip: float = 0.3) -> float:
    stream = rtc.AudioStream(track, sample_rate=16000, num_channels=1)
    chunks: list[np.ndarray] = []
    try:
        async for ev in stream:
            chunks.append(np.frombuffer(ev.frame.data, dtype=np.int16))
            if sum(map(len, chunks)) >= (seconds + skip) * 16000:
                break
    finally:
        await stream.aclose()
    x = np.concatenate(chunks).astype(np.float32)[int(skip * 16000) :] / 32767.0
    return float(np.sqrt(np.mean(x**2)))


def test_client_receives_speaker_audio(emulator_host):
    async def main():
        async with Emulator(emulator_host) as emu:
            spk = await emu.add_speaker(ROOM, "alice", tone(4.0), name="Alice", attributes={"lang": "en"})
            t0 = time.monotonic()
            c = await join(emu, "viewer")
            assert time.monotonic() - t0 < 5
            track, pub, part = await c.wait("track_subscribed")
            assert (part.identity, part.sid, part.name, dict(part.attributes)) == (
                "alice",
                spk.sid,
                "Alice",
                {"lang": "en"},
            )
            assert track.sid == spk.track_sid and pub.source == rtc.TrackSource.SOURCE_MICROPHONE
            assert await rms_of(track, 1.5) == pytest.approx(0.3 / np.sqrt(2), rel=0.1)
            assert spk.audio_started_at is not None and t0 < spk.audio_started_at < time.monotonic()
            assert [(r, i, k) for r, i, k, _ in emu.joins] == [(ROOM, "viewer", "STANDARD")]
            await c.room.disconnect()
            await asyncio.sleep(0.2)
            assert [p.identity for p in emu.participants(ROOM)] == ["alice"]

    run(main())


def test_audio_a_real_client_publishes_reaches_the_others_and_stops_when_it_leaves(emulator_host):
    async def main():
        async with Emulator(emulator_host) as emu:
            listener = await join(emu, "listener")
            talker = await join(emu, "talker")
            source = rtc.AudioSource(48000, 1)
            track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            publication = await talker.room.local_participant.publish_track(track, options)
            samples = (tone(6.0, amp=0.3, sr=48000) * 32767).astype(np.int16)

            async def speak() -> None:
                for i in range(0, len(samples) - 480, 480):
                    await source.capture_frame(rtc.AudioFrame(samples[i : i + 480].tobytes(), 48000, 1, 480))

            speaking = asyncio.create_task(speak())
            heard, pub, who = await listener.wait("track_subscribed", timeout=15)
            assert (who.identity, heard.sid, pub.source) == (
                "talker",
                publication.sid,
                rtc.TrackSource.SOURCE_MICROPHONE,
            )
            # Opus there and back again (the emulator decodes and encodes); the level survives.
            assert await rms_of(heard, 1.5, skip=1.0) == pytest.approx(0.3 / np.sqrt(2), rel=0.2)
            published = emu.room(ROOM).get("talker").tracks[publication.sid]
            assert published.audio.frames_in > 0
            speaking.cancel()
            await talker.room.disconnect()
            await listener.wait("track_unsubscribed", lambda t, *_: t.sid == publication.sid, timeout=10)
            await listener.room.disconnect()

    run(main(), 60)


def test_late_speaker_leaving_speaker_and_track_changes(emulator_host):
    async def main():
        async with Emulator(emulator_host) as emu:
            emu.ensure_room(ROOM)
            c = await join(emu, "viewer")
            bob = await emu.add_speaker(ROOM, "bob", tone(3.0, 300), leave_at=1.0)
            track, _, part = await c.wait("track_subscribed", lambda t, pub, p: p.identity == "bob")
            assert track.sid == bob.track_sid
            assert await rms_of(track, 0.4) > 0.1
            await c.wait("track_unsubscribed", lambda t, pub, p: p.identity == "bob", timeout=5)
            (p,) = await c.wait("participant_disconnected", lambda p: p.identity == "bob", timeout=5)
            assert bob.audio_started_at is not None and time.monotonic() - bob.audio_started_at >= 1.0

            carol = await emu.add_speaker(ROOM, "carol", tone(5.0, 500))
            await c.wait("track_subscribed", lambda t, pub, p: p.identity == "carol")
            await emu.set_muted(ROOM, "carol", True)
            await c.wait("track_muted", lambda p, pub: p.identity == "carol")
            await emu.unpublish(ROOM, "carol")
            await c.wait("track_unpublished", lambda pub, p: p.identity == "carol" and pub.sid == carol.track_sid)
            carol2 = await emu.republish(ROOM, "carol", tone(3.0, 700))
            assert carol2.track_sid != carol.track_sid
            track2, _, _ = await c.wait("track_subscribed", lambda t, pub, p: t.sid == carol2.track_sid)
            assert await rms_of(track2, 0.4) > 0.1
            assert "carol" in [p.identity for p in c.room.remote_participants.values()]
            await c.room.disconnect()

    run(main())


def test_text_streams_follow_the_sfu_identity_rule(emulator_host):
    async def main():
        async with Emulator(emulator_host) as emu:
            await emu.add_speaker(ROOM, "alice", tone(2.0))
            viewer = await join(emu, "viewer")
            seen: list[tuple[str, str, dict]] = []

            async def read(reader: rtc.TextStreamReader, identity: str) -> None:
                seen.append((identity, await reader.read_all(), dict(reader.info.attributes)))

            viewer.room.register_text_stream_handler(
                "lk.transcription", lambda r, ident: asyncio.ensure_future(read(r, ident))
            )

            bot = await join(emu, "caption-bot", kind="agent", auto_subscribe=False)
            attrs = {"lk.transcribed_track_id": "TR_x", "lk.segment_id": "SG_1", "lk.transcription_final": "false"}
            w = await bot.room.local_participant.stream_text(
                topic="lk.transcription", sender_identity="alice", attributes=attrs
            )
            await w.write("hello ")
            await w.write("world")
            await w.aclose(attributes={"lk.transcription_final": "true"})
            (rec,) = await emu.recorder.wait_for(lambda r: r.streams("lk.transcription"))
            assert (rec.sender_identity, rec.from_identity, rec.text, rec.generated) == (
                "alice",
                "caption-bot",
                "hello world",
                True,
            )
            assert rec["attributes"] == {**attrs, "lk.transcription_final": "true"}
            assert rec.done_at is not None and rec.done_at >= rec.header_at

            # A non-agent cannot speak for someone else: the SFU rewrites the identity.
            w = await viewer.room.local_participant.stream_text(topic="lk.transcription", sender_identity="alice")
            await w.write("spoof")
            await w.aclose()
            rec2 = await emu.recorder.wait_for(lambda r: len(r.text_streams) == 2 and r.text_streams[1])
            assert (rec2.sender_identity, rec2.generated, rec2.text) == ("viewer", False, "spoof")

            # The viewer got the agent's stream attributed to alice.
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.1)
            assert seen and seen[0][0] == "alice" and seen[0][1] == "hello world"

            # send_text: small texts come inline (and DEFLATE_RAW-compressed) in the header.
            await bot.room.local_participant.send_text("é " * 300, topic="chat")
            (chat,) = await emu.recorder.wait_for(lambda r: r.streams("chat"))
            assert chat.text == "é " * 300 and chat.sender_identity == "caption-bot"

            # Legacy transcription packets and user packets are recorded too.
            await bot.room.local_participant.publish_transcription(
                rtc.Transcription(
                    participant_identity="alice",
                    track_sid="TR_x",
                    segments=[
                        rtc.TranscriptionSegment(
                            id="SG_1", text="hello world", start_time=0, end_time=0, final=True, language="en"
                        )
                    ],
                )
            )
            await bot.room.local_participant.publish_data(b'{"ok":1}', topic="captions.status")
            await emu.recorder.wait_for(lambda r: r.transcriptions and r.user_packets)
            (tr,) = emu.recorder.transcriptions
            assert (tr.transcribed_participant_identity, tr.track_id, tr.segments[0].text) == (
                "alice",
                "TR_x",
                "hello world",
            )
            topic, payload, sender, _ = emu.recorder.user_packets[0]
            assert (topic, payload, sender) == ("captions.status", b'{"ok":1}', "caption-bot")
            data = await viewer.wait("data_received", lambda pkt: pkt.topic == "captions.status")
            assert data[0].participant.identity == "caption-bot"
            await bot.room.disconnect()
            await viewer.room.disconnect()

    run(main())


def test_send_data_reaches_clients_as_the_named_participant(emulator_host):
    async def main():
        async with Emulator(emulator_host) as emu:
            await emu.add_speaker(ROOM, "alice", tone(1.0))
            c = await join(emu, "bot", kind="agent")
            assert [p.identity for p in c.room.remote_participants.values()] == ["alice"]
            await emu.send_data(ROOM, "alice", b'{"target":"fr"}', "captions.control")
            (pkt,) = await c.wait("data_received")
            assert (pkt.topic, pkt.data, pkt.participant.identity) == ("captions.control", b'{"target":"fr"}', "alice")
            await c.room.disconnect()

    run(main())


def test_twirp_room_service_and_auth():
    async def main():
        async with Emulator("127.0.0.1") as emu:  # no WebRTC needed
            lk = api.LiveKitAPI(url=emu.http_url, api_key=emu.api_key, api_secret=emu.api_secret)
            try:
                await lk.room.create_room(api.CreateRoomRequest(name="twirp-room", metadata="m"))
                rooms = await lk.room.list_rooms(api.ListRoomsRequest())
                assert [r.name for r in rooms.rooms] == ["twirp-room"] and rooms.rooms[0].sid.startswith("RM_")
                await lk.room.delete_room(api.DeleteRoomRequest(room="twirp-room"))
                assert (await lk.room.list_rooms(api.ListRoomsRequest())).rooms == []
            finally:
                await lk.aclose()
            bad = api.LiveKitAPI(url=emu.http_url, api_key=emu.api_key, api_secret="wrong-secret")
            try:
                with pytest.raises(api.TwirpError) as ei:
                    await bad.room.list_rooms(api.ListRoomsRequest())
                assert ei.value.status == 401
            finally:
                await bad.aclose()
            tok = api.AccessToken(emu.api_key, emu.api_secret).with_grants(api.VideoGrants(room_create=True)).to_jwt()
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"{emu.http_url}/twirp/livekit.RoomService/CreateRoom",
                    data='{"name":"j"}',
                    headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
                ) as resp:
                    assert resp.status == 200 and json.loads(await resp.text())["name"] == "j"
                async with http.get(f"{emu.http_url}/rtc/v1") as resp:
                    assert resp.status == 404
                # livekit-client in a page on another origin reads these to fall back to v0 and
                # to tell a bad token from a missing server: 404 on v1, 401 for a bad token.
                async with http.get(f"{emu.http_url}/rtc/v1/validate?access_token=x") as resp:
                    assert resp.status == 404 and resp.headers["Access-Control-Allow-Origin"] == "*"
                async with http.get(f"{emu.http_url}/rtc/validate?access_token=x") as resp:
                    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == "*"
                async with http.get(f"{emu.http_url}/rtc/validate?access_token={emu.token('v', ROOM)}") as resp:
                    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "*"
            with pytest.raises(rtc.ConnectError):
                await rtc.Room().connect(emu.url, "not-a-token", rtc.RoomOptions(connect_timeout=5.0))
            assert emu.rejected

    run(main())


# -- agent dispatch through a real AgentServer (job runs in a forkserver process) -------------
async def _bot_request(req) -> None:
    await req.accept(identity="caption-bot", name="Captions", attributes={"roomscribe": "1"})


async def _bot_entrypoint(ctx) -> None:
    await ctx.connect()
    w = await ctx.room.local_participant.stream_text(
        topic="lk.transcription",
        sender_identity=ctx.job.metadata or "alice",
        attributes={"lk.segment_id": "SG_job", "lk.transcription_final": "true", "job": ctx.job.id},
    )
    await w.write("dispatched hello")
    await w.aclose()


def test_worker_dispatch_round_trip(emulator_host):
    from livekit.agents import AgentServer
    from livekit.protocol import agent

    async def main():
        async with Emulator(emulator_host) as emu:
            server = AgentServer(
                ws_url=emu.url,
                api_key=emu.api_key,
                api_secret=emu.api_secret,
                port=0,
                num_idle_processes=0,
                shutdown_process_timeout=5.0,
            )
            server.rtc_session(_bot_entrypoint, agent_name="emu-bot", on_request=_bot_request)
            run_task = asyncio.create_task(server.run(devmode=True))
            lk = api.LiveKitAPI(url=emu.http_url, api_key=emu.api_key, api_secret=emu.api_secret)
            try:
                for _ in range(100):
                    if any(w.agent_name == "emu-bot" for w in emu.workers.values()):
                        break
                    await asyncio.sleep(0.1)
                (worker,) = emu.workers.values()
                d = await lk.agent_dispatch.create_dispatch(
                    api.CreateAgentDispatchRequest(agent_name="emu-bot", room=ROOM, metadata="alice")
                )
                (rec,) = emu.dispatches
                assert d.id == rec.id and d.room == ROOM
                await rec.wait(10)
                assert (rec.state, rec.worker_id, rec.participant_identity) == ("assigned", worker.id, "caption-bot")
                (s,) = await emu.recorder.wait_for(lambda r: r.streams("lk.transcription"), timeout=20)
                assert (s.sender_identity, s.from_identity, s.generated, s.text) == (
                    "alice",
                    "caption-bot",
                    True,
                    "dispatched hello",
                )
                assert s.attributes["job"] == rec.job_id
                assert (ROOM, "caption-bot", "AGENT") in [j[:3] for j in emu.joins]
                bot = emu.room(ROOM).get("caption-bot")
                assert bot.attributes["roomscribe"] == "1" and bot.attributes.get("lk.agent.name") == "emu-bot"
                # Deleting the room sends `leave` to the job, which then ends.
                await lk.room.delete_room(api.DeleteRoomRequest(room=ROOM))
                for _ in range(100):
                    if worker.jobs.get(rec.job_id) == agent.JobStatus.JS_SUCCESS:
                        break
                    await asyncio.sleep(0.1)
                assert worker.jobs[rec.job_id] == agent.JobStatus.JS_SUCCESS
                assert worker.updates, "no update_worker received"
            finally:
                await lk.aclose()
                await server.aclose()
                await asyncio.wait_for(run_task, 10)

    run(main(), timeout=60)


# -- dispatch policy, with scripted workers speaking the /agent protocol --------------------
class FakeWorker:
    def __init__(
        self,
        emu: Emulator,
        http: aiohttp.ClientSession,
        agent_name: str,
        *,
        accept: bool,
        status: int = 0,
        load: float = 0.0,
    ) -> None:
        self.emu, self.http, self.agent_name, self.accept = emu, http, agent_name, accept
        self.status, self.load = status, load
        self.asked: list[str] = []
        self.assignments: list = []

    async def run(self) -> None:
        from livekit.protocol import agent

        tok = api.AccessToken(self.emu.api_key, self.emu.api_secret).with_grants(api.VideoGrants(agent=True)).to_jwt()
        async with self.http.ws_connect(f"{self.emu.url}/agent", headers={"Authorization": f"Bearer {tok}"}) as ws:
            await ws.send_bytes(
                agent.WorkerMessage(
                    register=agent.RegisterWorkerRequest(
                        type=agent.JobType.JT_ROOM, agent_name=self.agent_name, version="test"
                    )
                ).SerializeToString()
            )
            first = agent.ServerMessage.FromString(await ws.receive_bytes())
            self.id = first.register.worker_id
            await ws.send_bytes(
                agent.WorkerMessage(
                    update_worker=agent.UpdateWorkerStatus(status=self.status, load=self.load)
                ).SerializeToString()
            )
            async for msg in ws:
                m = agent.ServerMessage.FromString(msg.data)
                if m.HasField("availability"):
                    self.asked.append(m.availability.job.id)
                    await ws.send_bytes(
                        agent.WorkerMessage(
                            availability=agent.AvailabilityResponse(
                                job_id=m.availability.job.id,
                                available=self.accept,
                                participant_identity="scripted-bot",
                                participant_attributes={"a": "1"},
                            )
                        ).SerializeToString()
                    )
                elif m.HasField("assignment"):
                    self.assignments.append(m.assignment)


def test_dispatch_skips_full_workers_and_retries_after_a_refusal():
    async def main():
        async with Emulator("127.0.0.1", dispatch_timeout=1.0) as emu, aiohttp.ClientSession() as http:
            full = FakeWorker(emu, http, "bot", accept=True, status=1)  # WS_FULL
            refuses = FakeWorker(emu, http, "bot", accept=False, load=0.0)
            accepts = FakeWorker(emu, http, "bot", accept=True, load=0.9)
            other = FakeWorker(emu, http, "other-bot", accept=True)
            tasks = [asyncio.create_task(w.run()) for w in (full, refuses, accepts, other)]
            try:
                await asyncio.sleep(0.3)
                assert len(emu.workers) == 4
                rec = await (await emu.create_dispatch(ROOM, "bot", metadata="m")).wait(5)
                assert rec.state == "assigned" and rec.worker_id == accepts.id
                assert not full.asked and not other.asked
                assert rec.attempts[-1] == (accepts.id, "accepted")
                assert all(a == (refuses.id, "rejected") for a in rec.attempts[:-1])
                (assignment,) = accepts.assignments
                assert assignment.job.id == rec.job_id and assignment.job.metadata == "m"
                assert assignment.job.room.name == ROOM and assignment.url == emu.url
                claims = api.TokenVerifier(emu.api_key, emu.api_secret).verify(assignment.token)
                assert (claims.identity, claims.kind, claims.video.room, claims.video.agent) == (
                    "scripted-bot",
                    "agent",
                    ROOM,
                    True,
                )
                assert claims.attributes == {"a": "1"}
                failed = await (await emu.create_dispatch(ROOM, "nobody")).wait(5)
                assert failed.state == "failed" and "no available worker" in failed.error
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    run(main())


def test_start_on_stop_and_removal_of_real_clients(emulator_host):
    async def main():
        emu = await Emulator(emulator_host).start()
        try:
            spk = await emu.add_speaker(ROOM, "alice", tone(2.0), start_delay=0.5, start_on="bot")
            viewer = await join(emu, "viewer")
            await viewer.wait("track_subscribed")
            await asyncio.sleep(0.3)
            assert spk.audio_started_at is None  # waits for "bot"
            bot = await join(emu, "bot", kind="agent")
            started = await spk.wait_started(5)
            assert spk.source.clock_start is not None and started == pytest.approx(spk.source.clock_start + 0.5)
            assert [p.identity for p in bot.room.remote_participants.values()].count("viewer") == 1
            dup = await join(emu, "viewer")  # same identity: the first session is kicked
            await viewer.wait("disconnected", timeout=5)
            await emu.remove_participant(ROOM, "viewer")
            (reason,) = await dup.wait("disconnected", timeout=5)
            assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED
        finally:
            await emu.stop()
        (reason,) = await bot.wait("disconnected", timeout=5)  # stop() tells clients to leave
        assert reason == rtc.DisconnectReason.SERVER_SHUTDOWN

    run(main())
