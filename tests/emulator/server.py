"""``Emulator``: a test-only LiveKit server (signal, SFU-ish media and data, agents, Twirp)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import numpy as np
from aiohttp import web
from livekit.protocol import models, rtc

from livekit import api

from . import twirp
from .agent_dispatch import AgentDispatcher, DispatchRecord, WorkerRecord
from .data import apply_sfu_rule, server_user_packet
from .media import AudioSource
from .recorder import Recorder
from .room import Participant, Room, Speaker, TrackRecord
from .signal import ClientSession

logger = logging.getLogger("tests.emulator")

EMULATOR_KEY: web.AppKey[Emulator] = web.AppKey("emulator")

_KINDS = {
    "standard": models.ParticipantInfo.Kind.STANDARD,
    "agent": models.ParticipantInfo.Kind.AGENT,
    "sip": models.ParticipantInfo.Kind.SIP,
    "ingress": models.ParticipantInfo.Kind.INGRESS,
    "egress": models.ParticipantInfo.Kind.EGRESS,
}


@web.middleware
async def _allow_any_origin(request: web.Request, handler) -> web.StreamResponse:
    """CORS as LiveKit's server sends it: a page on another origin (livekit-client in a browser)
    reads ``/rtc/validate`` answers to tell a bad token from a missing path."""
    try:
        response = await handler(request)
    except web.HTTPException as e:
        response = web.Response(status=e.status, text=e.text, headers={"Content-Type": e.content_type})
    if not response.prepared:
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


class Emulator:
    """Start with ``await emu.start()`` (or ``async with Emulator(host) as emu``) inside a loop."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        api_key: str = "devkey",
        api_secret: str = "secret",
        *,
        port: int = 0,
        dispatch_timeout: float = 15.0,
        availability_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.api_key = api_key
        self.api_secret = api_secret
        self.rooms: dict[str, Room] = {}
        self.recorder = Recorder()
        self.twirp_calls: list[tuple[str, Any]] = []
        #: (path, reason) of every request refused for its token
        self.rejected: list[tuple[str, str]] = []
        #: (room, identity, kind name, monotonic time) of every real client that joined
        self.joins: list[tuple[str, str, str, float]] = []
        self._verifier = api.TokenVerifier(api_key, api_secret)
        self._sessions: set[ClientSession] = set()
        self._handlers: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self._dispatch_args = (dispatch_timeout, availability_timeout)
        self.dispatcher: AgentDispatcher

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> Emulator:
        self.dispatcher = AgentDispatcher(
            self, dispatch_timeout=self._dispatch_args[0], availability_timeout=self._dispatch_args[1]
        )
        app = web.Application(middlewares=[_allow_any_origin])
        app[EMULATOR_KEY] = self
        app.router.add_get("/rtc/v1", self._rtc_v1)
        app.router.add_get("/rtc/v1/validate", self._rtc_v1)
        app.router.add_get("/rtc/validate", self._validate)
        app.router.add_get("/rtc", self._rtc)
        app.router.add_get("/agent", self.dispatcher.handle_ws)
        twirp.setup(app)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=3.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        logger.info("LiveKit emulator listening on %s", self.url)
        return self

    async def stop(self) -> None:
        """Tell real clients to leave, close peer connections, sockets and the HTTP server."""
        for room in list(self.rooms.values()):
            for p in list(room.participants.values()):
                for t in list(p.tasks):
                    t.cancel()
        await asyncio.gather(
            *(s.close(leave_reason=models.DisconnectReason.SERVER_SHUTDOWN) for s in list(self._sessions)),
            return_exceptions=True,
        )
        await self.dispatcher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self.rooms.clear()

    async def __aenter__(self) -> Emulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def workers(self) -> dict[str, WorkerRecord]:
        return self.dispatcher.workers

    @property
    def dispatches(self) -> list[DispatchRecord]:
        return self.dispatcher.dispatches

    # -- tokens ----------------------------------------------------------------------------
    def token(
        self,
        identity: str,
        room: str,
        *,
        kind: str = "standard",
        name: str | None = None,
        attributes: dict[str, str] | None = None,
        metadata: str = "",
    ) -> str:
        """A join token for a test client (``kind="agent"`` also sets the agent grant)."""
        tok = (
            api.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_name(name or identity)
            .with_kind(kind)  # type: ignore[arg-type]
            .with_grants(
                api.VideoGrants(room_join=True, room=room, agent=kind == "agent", can_update_own_metadata=True)
            )
        )
        if attributes:
            tok = tok.with_attributes(attributes)
        if metadata:
            tok = tok.with_metadata(metadata)
        return tok.to_jwt()

    def _auth(self, request: web.Request) -> api.access_token.Claims | None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.query.get("access_token", "")
        if not token:
            self.rejected.append((request.path, "no token"))
            return None
        try:
            return self._verifier.verify(token)
        except Exception as e:  # noqa: BLE001 - any jwt error is a 401
            self.rejected.append((request.path, f"{type(e).__name__}: {e}"))
            return None

    # -- HTTP handlers ---------------------------------------------------------------------
    async def _rtc_v1(self, request: web.Request) -> web.Response:
        # A server without the v1 path answers 404 on it and on its validate URL: livekit-client
        # then falls back to v0 (dual peer connections), as it does with older LiveKit servers.
        return web.Response(status=404, text="single peer connection mode is not emulated")

    async def _validate(self, request: web.Request) -> web.Response:
        if self._auth(request) is None:
            return web.Response(status=401, text="invalid token")
        return web.Response(text="success")

    async def _rtc(self, request: web.Request) -> web.StreamResponse:
        claims = self._auth(request)
        video = claims.video if claims is not None else None
        if claims is None or video is None or not video.room_join or not video.room:
            return web.Response(status=401, text="invalid token or no room_join grant")
        ws = web.WebSocketResponse(max_msg_size=16 << 20, timeout=2.0)
        await ws.prepare(request)
        if request.query.get("reconnect") == "1":
            # Resume is not emulated: ask for a full reconnect (a fresh join).
            await ws.send_bytes(
                rtc.SignalResponse(
                    leave=rtc.LeaveRequest(can_reconnect=True, action=rtc.LeaveRequest.Action.RECONNECT)
                ).SerializeToString()
            )
            await ws.close()
            return ws
        room = self.ensure_room(video.room)
        kind = _KINDS.get(claims.kind or "standard", models.ParticipantInfo.Kind.STANDARD)
        perm = models.ParticipantPermission(
            can_subscribe=video.can_subscribe is not False,
            can_publish=video.can_publish is not False,
            can_publish_data=video.can_publish_data is not False,
            hidden=bool(video.hidden),
            agent=bool(video.agent),
            can_update_metadata=bool(video.can_update_own_metadata),
        )
        try:
            client_protocol = int(request.query.get("client_protocol", "0"))
        except ValueError:
            client_protocol = 0
        caps = [
            models.ClientInfo.Capability.Value(c)
            for c in request.query.get("capabilities", "").split(",")
            if c in models.ClientInfo.Capability.keys()
        ]
        p = Participant(
            claims.identity,
            name=claims.name or "",
            kind=kind,
            attributes=claims.attributes or {},
            metadata=claims.metadata or "",
            client_protocol=client_protocol,
            permission=perm,
            capabilities=caps,
        )
        session = ClientSession(self, ws, room, p, dict(request.query))
        p.session = session
        self._sessions.add(session)
        self.joins.append((room.name, p.identity, models.ParticipantInfo.Kind.Name(kind), time.monotonic()))
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await session.run()
        finally:
            if task is not None:
                self._handlers.discard(task)
        return ws

    # -- SFU data routing ------------------------------------------------------------------
    def _route_client_data(self, session: ClientSession, raw: bytes, kind: int) -> None:
        dp = models.DataPacket()
        try:
            dp.ParseFromString(raw)
        except Exception:  # noqa: BLE001
            logger.warning("undecodable DataPacket from %s", session.identity)
            return
        sender = session.participant
        forward = apply_sfu_rule(dp, sender, kind)
        room = session.room
        self.recorder.record(room.name, sender.identity, dp, kind, forward)
        if forward:
            self._deliver(room, dp, kind, exclude=sender)

    def _deliver(self, room: Room, dp: models.DataPacket, kind: int, exclude: Participant | None = None) -> None:
        data = dp.SerializeToString()
        dests = set(dp.destination_identities)
        for s in room.sessions(exclude=exclude):
            if not dests or s.identity in dests:
                s.subscriber.send_data(data, kind)

    # -- rooms -----------------------------------------------------------------------------
    def ensure_room(self, name: str, **kwargs: Any) -> Room:
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = Room(name, **{k: v for k, v in kwargs.items() if v})
        return room

    def room(self, name: str) -> Room:
        try:
            return self.rooms[name]
        except KeyError:
            raise KeyError(f"no room {name!r}") from None

    async def delete_room(self, name: str) -> None:
        room = self.rooms.pop(name, None)
        if room is None:
            return
        for p in list(room.participants.values()):
            await room.remove(p, models.DisconnectReason.ROOM_DELETED)

    # -- emulated participants -------------------------------------------------------------
    async def add_speaker(
        self,
        room: str,
        identity: str,
        pcm: np.ndarray,
        *,
        name: str | None = None,
        attributes: dict[str, str] | None = None,
        metadata: str | None = None,
        start_delay: float = 0.0,
        leave_at: float | None = None,
        track_sid: str | None = None,
        sample_rate: int = 16000,
        start_on: str | None = None,
        client_protocol: int = 3,
        kind: str = "standard",
    ) -> Speaker:
        """Join an emulated participant publishing ``pcm`` (mono float, 16 kHz) as its microphone.

        The audio clock starts when the first subscriber (or the subscriber whose identity
        is ``start_on``) pulls its first frame; ``start_delay`` seconds of silence come
        before sample 0, silence after the end. ``leave_at``: leave that many seconds after
        sample 0 was sent. ``kind``: LiveKit's participant kind ("sip" for a phone caller).
        """
        r = self.ensure_room(room)
        p = Participant(
            identity,
            name=name or identity,
            attributes=attributes,
            metadata=metadata or "",
            client_protocol=client_protocol,
            kind=_KINDS[kind],
        )
        track = TrackRecord(track_sid, audio=AudioSource(pcm, sample_rate, start_delay=start_delay, start_on=start_on))
        p.tracks[track.sid] = track
        await r.add(p)
        if leave_at is not None:
            self._spawn_for(p, self._leave_later(r, p, track, leave_at))
        return Speaker(r, p, track)

    def _spawn_for(self, p: Participant, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        p.tasks.add(task)
        task.add_done_callback(p.tasks.discard)

    async def _leave_later(self, room: Room, p: Participant, track: TrackRecord, leave_at: float) -> None:
        assert track.audio is not None
        await track.audio.started.wait()
        start = track.audio.audio_started_at
        assert start is not None
        await asyncio.sleep(max(0.0, start + leave_at - time.monotonic()))
        await room.remove(p, models.DisconnectReason.CLIENT_INITIATED)

    def _participant(self, room: str, identity: str) -> tuple[Room, Participant]:
        r = self.room(room)
        return r, r.get(identity)

    async def remove_participant(self, room: str, identity: str) -> None:
        """Emulated: leaves (DISCONNECTED update + renegotiation). Real client: sent ``leave``."""
        r, p = self._participant(room, identity)
        await r.remove(p, models.DisconnectReason.PARTICIPANT_REMOVED)

    async def unpublish(self, room: str, identity: str, track_sid: str | None = None) -> None:
        r, p = self._participant(room, identity)
        sids = [track_sid] if track_sid else list(p.tracks)
        for sid in sids:
            await r.unpublish(p, sid)

    async def republish(
        self,
        room: str,
        identity: str,
        pcm: np.ndarray,
        *,
        track_sid: str | None = None,
        sample_rate: int = 16000,
        start_delay: float = 0.0,
        start_on: str | None = None,
    ) -> Speaker:
        """Publish a new audio track (new track sid) for an emulated participant."""
        r, p = self._participant(room, identity)
        track = TrackRecord(track_sid, audio=AudioSource(pcm, sample_rate, start_delay=start_delay, start_on=start_on))
        await r.publish(p, track)
        return Speaker(r, p, track)

    async def set_muted(self, room: str, identity: str, muted: bool, track_sid: str | None = None) -> None:
        """Mute/unmute (TrackInfo.muted in a ParticipantUpdate); muted audio is sent as silence."""
        r, p = self._participant(room, identity)
        for sid in [track_sid] if track_sid else list(p.tracks):
            await r.set_muted(p, sid, muted)

    async def send_data(
        self,
        room: str,
        from_identity: str,
        payload: bytes,
        topic: str,
        *,
        kind: int = models.DataPacket.Kind.RELIABLE,
        destination_identities: list[str] | None = None,
    ) -> None:
        """Deliver a user DataPacket to the real clients as if ``from_identity`` sent it."""
        r = self.room(room)
        sender = r.participants.get(from_identity)
        dp = server_user_packet(
            payload,
            topic,
            from_identity=from_identity,
            from_sid=sender.sid if sender else "",
            kind=kind,
            destination_identities=destination_identities,
        )
        self._deliver(r, dp, kind, exclude=sender)

    # -- agents ----------------------------------------------------------------------------
    async def create_dispatch(self, room: str, agent_name: str, metadata: str = "") -> DispatchRecord:
        """Create the room if needed and dispatch a job; ``await rec.wait()`` for the outcome."""
        self.ensure_room(room)
        return self.dispatcher.create(room, agent_name, metadata)

    def participants(self, room: str) -> list[Participant]:
        r = self.rooms.get(room)
        return list(r.participants.values()) if r else []
