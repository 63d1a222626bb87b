"""The ``/rtc`` signal connection of one real client (protocol v0, dual peer connections)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from livekit.protocol import models, rtc

from .media import ForwardedAudio
from .peers import PublisherPeer, SubscriberPeer
from .room import Participant, Room, TrackRecord
from .util import now_ms

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("tests.emulator.signal")

SERVER_VERSION = "1.9.0"
PING_INTERVAL, PING_TIMEOUT = 5, 15

_IGNORED = {
    "subscription",
    "track_setting",
    "update_layers",
    "subscription_permission",
    "sync_state",
    "simulate",
    "update_audio_track",
    "update_video_track",
    "update_data_subscription",
}


def server_info() -> models.ServerInfo:
    return models.ServerInfo(
        edition=models.ServerInfo.Edition.Standard,
        version=SERVER_VERSION,
        protocol=16,
        node_id="ND_emulator",
        region="local",
        agent_protocol=1,
    )


class ClientSession:
    def __init__(
        self, emu: Emulator, ws: web.WebSocketResponse, room: Room, participant: Participant, query: dict[str, str]
    ) -> None:
        self.emu = emu
        self.ws = ws
        self.room = room
        self.participant = participant
        self.query = query
        self.closed = False
        self.subscriber = SubscriberPeer(self)
        self.publisher = PublisherPeer(self)
        self.published_tracks: dict[str, TrackRecord] = {}  # tracks the client asked to publish
        self._awaiting_media: dict[str, TrackRecord] = {}  # audio published, media not yet arrived; by cid
        self.connected_at = time.monotonic()
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task] = set()

    @property
    def identity(self) -> str:
        return self.participant.identity

    def __repr__(self) -> str:
        return f"<ClientSession {self.identity} in {self.room.name}>"

    # -- sending ---------------------------------------------------------------------------
    async def send(self, msg: rtc.SignalResponse) -> None:
        if self.closed or self.ws.closed:
            return
        async with self._send_lock:
            try:
                await self.ws.send_bytes(msg.SerializeToString())
            except (ConnectionError, RuntimeError, aiohttp.ClientError):
                logger.debug("send to %s failed", self.identity, exc_info=True)

    async def send_update(self, infos: list[models.ParticipantInfo]) -> None:
        await self.send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=infos)))

    # -- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        p, room = self.participant, self.room
        old = room.participants.get(p.identity)
        if old is not None:
            await room.remove(old, models.DisconnectReason.DUPLICATE_IDENTITY)
        others = [q for q in room.participants.values()]
        join = rtc.JoinResponse(
            room=room.info(),
            participant=p.info(),
            other_participants=[q.info() for q in others],
            server_version=SERVER_VERSION,
            server_info=server_info(),
            subscriber_primary=True,
            ping_interval=PING_INTERVAL,
            ping_timeout=PING_TIMEOUT,
            server_region="local",
        )
        await self.send(rtc.SignalResponse(join=join))
        known = {q.sid for q in others}
        await room.add(p)
        late = [q for q in room.participants.values() if q is not p and q.sid not in known]
        if late:  # joined while the JoinResponse was on its way
            await self.send_update([q.info() for q in late])
        for q in list(room.participants.values()):
            if q is not p:
                for t in q.tracks.values():
                    self.subscriber.add_track(q, t, negotiate=False)
        self.subscriber.negotiate()
        try:
            async for msg in self.ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    req = rtc.SignalRequest()
                    try:
                        req.ParseFromString(msg.data)
                    except Exception:  # noqa: BLE001
                        logger.warning("bad signal message from %s", self.identity)
                        continue
                    if await self._handle(req):
                        break
                elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                    break
        finally:
            await room.remove(p, models.DisconnectReason.CLIENT_INITIATED, notify_client=False)
            await self.close()

    async def close(self, leave_reason: int | None = None) -> None:
        if self.closed:
            return
        if leave_reason is not None and not self.ws.closed:
            await self.send(
                rtc.SignalResponse(
                    leave=rtc.LeaveRequest(
                        can_reconnect=False, reason=leave_reason, action=rtc.LeaveRequest.Action.DISCONNECT
                    )
                )
            )
        self.closed = True
        for t in list(self._tasks):
            t.cancel()
        for track in self.published_tracks.values():
            if isinstance(track.audio, ForwardedAudio):
                track.audio.stop()
        try:
            await self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        await asyncio.gather(self.subscriber.close(), self.publisher.close(), return_exceptions=True)
        self.emu._sessions.discard(self)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- requests --------------------------------------------------------------------------
    async def _handle(self, req: rtc.SignalRequest) -> bool:
        """Handle one request; True means the client left."""
        which = req.WhichOneof("message")
        if which == "offer":
            self._spawn(self._guard(self.publisher.on_offer(req.offer), "publisher answer"))
        elif which == "answer":
            self.subscriber.on_answer(req.answer.sdp)
        elif which == "trickle":
            peer = self.subscriber if req.trickle.target == rtc.SignalTarget.SUBSCRIBER else self.publisher
            await peer.add_candidate(req.trickle.candidateInit)
        elif which == "ping":
            await self.send(rtc.SignalResponse(pong=req.ping))
        elif which == "ping_req":
            await self.send(
                rtc.SignalResponse(pong_resp=rtc.Pong(last_ping_timestamp=req.ping_req.timestamp, timestamp=now_ms()))
            )
        elif which == "add_track":
            await self._add_track(req.add_track)
        elif which == "mute":
            t = self.published_tracks.get(req.mute.sid)
            if t is not None:
                if t.sid in self.participant.tracks:
                    await self.room.set_muted(self.participant, t.sid, req.mute.muted)
                else:
                    t.muted = req.mute.muted
        elif which == "update_metadata":
            await self._update_metadata(req.update_metadata)
        elif which == "leave":
            return True
        elif which not in _IGNORED:
            logger.debug("ignoring %s from %s", which, self.identity)
        return False

    async def _guard(self, coro, what: str) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001
            if not self.closed:
                logger.exception("%s for %s failed", what, self.identity)

    async def _add_track(self, req: rtc.AddTrackRequest) -> None:
        # Audio is forwarded to the other participants once it arrives on the publisher
        # connection (forward_track); other media is accepted and drained.
        audio = req.type == models.TrackType.AUDIO
        track = TrackRecord(
            name=req.name,
            source=req.source,
            muted=req.muted,
            type=req.type,
            audio=ForwardedAudio(req.cid) if audio else None,
        )
        self.published_tracks[track.sid] = track
        if audio:
            self._awaiting_media[req.cid] = track
        info = track.info()
        if not audio:
            info.mime_type = ""
        await self.send(rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=req.cid, track=info)))

    def forward_track(self, remote) -> bool:
        """The client's media for a track it published: announce it and pass it on (as the
        real SFU does once media flows). False when no published track claims it."""
        track = self._awaiting_media.pop(remote.id, None)
        if track is None and self._awaiting_media:  # a client whose msid track id is not its cid
            track = self._awaiting_media.pop(next(iter(self._awaiting_media)))
        if track is None or not isinstance(track.audio, ForwardedAudio):
            return False
        track.audio.attach(remote)
        self._spawn(self._guard(self.room.publish(self.participant, track), "publishing a forwarded track"))
        return True

    async def _update_metadata(self, req: rtc.UpdateParticipantMetadata) -> None:
        p = self.participant
        if req.name:
            p.name = req.name
        if req.metadata:
            p.metadata = req.metadata
        for k, v in req.attributes.items():
            if v:
                p.attributes[k] = v
            else:
                p.attributes.pop(k, None)
        p.version += 1
        await self.room.announce(p, include_self=True)
        if req.request_id:
            await self.send(
                rtc.SignalResponse(
                    request_response=rtc.RequestResponse(
                        request_id=req.request_id, reason=rtc.RequestResponse.Reason.OK
                    )
                )
            )

    # -- data ------------------------------------------------------------------------------
    def on_client_data(self, raw: bytes, kind: int) -> None:
        self.emu._route_client_data(self, raw, kind)
