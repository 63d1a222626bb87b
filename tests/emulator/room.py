"""Rooms and participants, and what the SFU tells every connected client when they change.

Each change is announced with a ``ParticipantUpdate`` to every real client first, then
the subscriber peer connections renegotiate (new offer), so the client knows the
participant and the track before the media section arrives.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from livekit.protocol import models

from .media import AudioSource, ForwardedAudio
from .util import new_id

if TYPE_CHECKING:
    from .signal import ClientSession

PInfo = models.ParticipantInfo


class TrackRecord:
    """A published track. ``audio`` is what subscribers hear: an emulated speaker's
    ``AudioSource``, or the ``ForwardedAudio`` of a real client's microphone."""

    def __init__(
        self,
        sid: str | None = None,
        *,
        name: str = "microphone",
        source: int = models.TrackSource.MICROPHONE,
        muted: bool = False,
        audio: AudioSource | ForwardedAudio | None = None,
        type: int = models.TrackType.AUDIO,
    ) -> None:
        self.sid = sid or new_id("TR_")
        self.name = name
        self.source = source
        self.muted = muted
        self.audio = audio
        self.type = type

    def info(self) -> models.TrackInfo:
        return models.TrackInfo(
            sid=self.sid, type=self.type, name=self.name, muted=self.muted, source=self.source, mime_type="audio/opus"
        )


class Participant:
    """A participant: a real client (``session`` set) or an emulated one (``session`` None)."""

    def __init__(
        self,
        identity: str,
        *,
        name: str = "",
        kind: int = PInfo.Kind.STANDARD,
        attributes: dict[str, str] | None = None,
        metadata: str = "",
        client_protocol: int = 0,
        permission: models.ParticipantPermission | None = None,
        capabilities: list[int] | None = None,
        session: ClientSession | None = None,
    ) -> None:
        self.sid = new_id("PA_")
        self.identity = identity
        self.name = name
        self.kind = kind
        self.attributes = dict(attributes or {})
        self.metadata = metadata
        self.client_protocol = client_protocol
        self.capabilities = list(capabilities or [])
        self.permission = permission or models.ParticipantPermission(
            can_subscribe=True, can_publish=True, can_publish_data=True
        )
        self.session = session
        self.state = PInfo.State.ACTIVE
        self.disconnect_reason = models.DisconnectReason.UNKNOWN_REASON
        self.tracks: dict[str, TrackRecord] = {}
        self.joined_at = time.time()
        self.version = 1
        self.tasks: set[asyncio.Task] = set()

    @property
    def is_agent(self) -> bool:
        return self.kind == PInfo.Kind.AGENT

    @property
    def is_emulated(self) -> bool:
        return self.session is None

    def info(self) -> PInfo:
        return PInfo(
            sid=self.sid,
            identity=self.identity,
            name=self.name,
            state=self.state,
            tracks=[t.info() for t in self.tracks.values()],
            metadata=self.metadata,
            joined_at=int(self.joined_at),
            joined_at_ms=int(self.joined_at * 1000),
            version=self.version,
            permission=self.permission,
            is_publisher=bool(self.tracks),
            kind=self.kind,
            attributes=self.attributes,
            disconnect_reason=self.disconnect_reason,
            client_protocol=self.client_protocol,
            capabilities=self.capabilities,
        )

    def __repr__(self) -> str:
        kind = PInfo.Kind.Name(self.kind)
        return f"<Participant {self.identity} {self.sid} {kind} {'emulated' if self.is_emulated else 'client'}>"


class Speaker:
    """Handle returned by ``Emulator.add_speaker``/``republish``."""

    def __init__(self, room: Room, participant: Participant, track: TrackRecord) -> None:
        self.room = room
        self.participant = participant
        self.track = track

    @property
    def identity(self) -> str:
        return self.participant.identity

    @property
    def sid(self) -> str:
        return self.participant.sid

    @property
    def track_sid(self) -> str:
        return self.track.sid

    @property
    def source(self) -> AudioSource:
        assert self.track.audio is not None
        return self.track.audio

    @property
    def audio_started_at(self) -> float | None:
        """time.monotonic() at which sample 0 was sent (None until a subscriber pulled audio)."""
        return self.source.audio_started_at

    @property
    def audio_ends_at(self) -> float | None:
        return self.source.audio_ends_at

    async def wait_started(self, timeout: float = 15.0) -> float:
        await asyncio.wait_for(self.source.started.wait(), timeout)
        assert self.audio_started_at is not None
        return self.audio_started_at

    def __repr__(self) -> str:
        return f"<Speaker {self.identity} {self.sid} {self.track_sid}>"


class Room:
    def __init__(self, name: str, *, metadata: str = "", empty_timeout: int = 300, max_participants: int = 0) -> None:
        self.sid = new_id("RM_")
        self.name = name
        self.metadata = metadata
        self.empty_timeout = empty_timeout
        self.max_participants = max_participants
        self.created_at = time.time()
        self.participants: dict[str, Participant] = {}

    def info(self) -> models.Room:
        return models.Room(
            sid=self.sid,
            name=self.name,
            metadata=self.metadata,
            empty_timeout=self.empty_timeout,
            max_participants=self.max_participants,
            creation_time=int(self.created_at),
            creation_time_ms=int(self.created_at * 1000),
            num_participants=len(self.participants),
            num_publishers=sum(1 for p in self.participants.values() if p.tracks),
        )

    def sessions(self, exclude: Participant | None = None) -> list[ClientSession]:
        return [
            p.session
            for p in list(self.participants.values())
            if p.session is not None and p is not exclude and not p.session.closed
        ]

    def get(self, identity: str) -> Participant:
        try:
            return self.participants[identity]
        except KeyError:
            raise KeyError(f"no participant {identity!r} in room {self.name!r}") from None

    async def announce(self, p: Participant, *, include_self: bool = False) -> None:
        info = p.info()
        for s in self.sessions(exclude=None if include_self else p):
            await s.send_update([info])

    async def add(self, p: Participant) -> None:
        """Admit ``p`` (already told about the room, if it is a client) and announce it."""
        old = self.participants.get(p.identity)
        if old is not None and old is not p:
            await self.remove(old, models.DisconnectReason.DUPLICATE_IDENTITY)
        self.participants[p.identity] = p
        await self.announce(p)
        for s in self.sessions(exclude=p):
            for t in p.tracks.values():
                if t.audio is not None:
                    s.subscriber.add_track(p, t)

    async def remove(
        self, p: Participant, reason: int = models.DisconnectReason.CLIENT_INITIATED, *, notify_client: bool = True
    ) -> None:
        if self.participants.get(p.identity) is not p:
            return
        del self.participants[p.identity]
        for task in list(p.tasks):
            if task is not asyncio.current_task():
                task.cancel()
        p.state = PInfo.State.DISCONNECTED
        p.disconnect_reason = reason
        p.version += 1
        await self.announce(p)
        for s in self.sessions(exclude=p):
            for sid in p.tracks:
                s.subscriber.remove_track(sid)
        if p.session is not None:
            await p.session.close(leave_reason=reason if notify_client else None)

    async def publish(self, p: Participant, track: TrackRecord) -> None:
        p.tracks[track.sid] = track
        p.version += 1
        await self.announce(p)
        if track.audio is not None:
            for s in self.sessions(exclude=p):
                s.subscriber.add_track(p, track)

    async def unpublish(self, p: Participant, track_sid: str) -> TrackRecord:
        track = p.tracks.pop(track_sid)
        p.version += 1
        await self.announce(p)
        for s in self.sessions(exclude=p):
            s.subscriber.remove_track(track_sid)
        return track

    async def set_muted(self, p: Participant, track_sid: str, muted: bool) -> None:
        track = p.tracks[track_sid]
        track.muted = muted
        if track.audio is not None:
            track.audio.muted = muted
        p.version += 1
        await self.announce(p)
