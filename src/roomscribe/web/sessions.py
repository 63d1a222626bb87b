"""Caption sessions of the embedded page: each browser tab is a participant with its own
live speaker; every participant of a session sees everyone's captions, and the session
keeps the transcript (a sink every speaker of the session shares)."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from ..engine import StreamConfig
from ..session import Caption, LiveSpeaker, Pipeline, Transcript
from ..session.scheduler import EngineWorker

logger = logging.getLogger("roomscribe.web")

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_SESSION_TTL = 600.0  # an empty session's transcript stays downloadable this long


class Participant:
    def __init__(self, session: Session, name: str, color: int):
        self.id = "P_" + secrets.token_hex(6)
        self.session = session
        self.name = name
        self.color = color
        self.speaker: LiveSpeaker | None = None
        self.send: Callable[[dict], None] | None = None  # set once the data channel is open
        self.close_transport: Callable[[], Awaitable[None]] | None = None
        self.left = False

    def info(self) -> dict:
        lag = self.speaker.lag if self.speaker else 0.0
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "lag": round(lag, 3),
            "language": self.speaker.language if self.speaker else None,
        }

    def start_speaking(self, worker: EngineWorker, config: StreamConfig) -> LiveSpeaker:
        pipeline = Pipeline(sinks=[self.session.transcript, self._broadcast])
        self.speaker = LiveSpeaker(worker, config, name=self.name, pipeline=pipeline, offset=self.session.clock())
        return self.speaker

    def _broadcast(self, caption: Caption) -> None:
        self.session.broadcast(caption_message(self, caption))

    async def leave(self) -> None:
        """The tab is gone: caption what it said last, then free its stream."""
        if self.left:
            return
        self.left = True
        if self.speaker is not None:
            await self.speaker.finish()
        self.session.participants.pop(self.id, None)
        self.session.emptied_at = time.monotonic() if not self.session.participants else None
        self.session.broadcast({"type": "participants", "participants": self.session.roster()})
        if self.close_transport is not None:
            await self.close_transport()


def caption_message(participant: Participant, caption: Caption) -> dict:
    return {
        "type": "caption",
        "participant": participant.id,
        # A microphone several people share: the voice within it, as "name (S2)".
        "speaker": participant.name if caption.speaker is None else f"{participant.name} ({caption.speaker})",
        "voice": caption.speaker,
        "color": participant.color,
        "segment_id": caption.segment_id,
        "text": caption.text,
        "tail": caption.tail,
        "final": caption.final,
        "start": round(caption.start, 3),
        "end": round(caption.end, 3),
        "language": caption.language,
        "lag": round(caption.lag, 3),
        "sent_at": time.time(),
    }


class Session:
    def __init__(self, session_id: str):
        self.id = session_id
        self.created = time.monotonic()
        self.transcript = Transcript()
        self.participants: dict[str, Participant] = {}
        self.emptied_at: float | None = self.created
        self._joined = 0

    def clock(self) -> float:
        return time.monotonic() - self.created

    def join(self, name: str | None) -> Participant:
        self._joined += 1
        name = (name or "").strip()[:40] or f"Speaker {self._joined}"
        participant = Participant(self, name, color=(self._joined - 1) % 8)
        self.participants[participant.id] = participant
        self.emptied_at = None
        return participant

    def roster(self) -> list[dict]:
        return [p.info() for p in self.participants.values()]

    def broadcast(self, message: dict) -> None:
        for participant in list(self.participants.values()):
            if participant.send is not None:
                try:
                    participant.send(message)
                except Exception as exc:  # noqa: BLE001 - a closing channel must not stop the others
                    logger.debug("could not send to %s: %s", participant.id, exc)

    def history(self) -> dict:
        colors = {p.name: p.color for p in self.participants.values()}
        return {
            "type": "history",
            "lines": [{**c.as_dict(), "color": colors.get(c.participant, 0)} for c in self.transcript.committed()],
        }


class Sessions:
    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self.sessions: dict[str, Session] = {}

    def get(self, session_id: str) -> Session | None:
        return self.sessions.get(session_id)

    def open(self, session_id: str | None) -> Session:
        """The session to join (a new one when no id is given). ValueError/LookupError when refused."""
        self._expire()
        session_id = session_id or secrets.token_urlsafe(6)
        if not SESSION_ID.match(session_id):
            raise ValueError("a session id is 1-64 letters, digits, '-' or '_'")
        session = self.sessions.get(session_id)
        if session is None:
            if len(self.sessions) >= self.max_sessions:
                raise LookupError(f"the server holds its limit of {self.max_sessions} sessions")
            session = self.sessions[session_id] = Session(session_id)
        return session

    def speakers(self) -> int:
        return sum(len(s.participants) for s in self.sessions.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for sid, session in list(self.sessions.items()):
            if session.emptied_at is not None and now - session.emptied_at > EMPTY_SESSION_TTL:
                del self.sessions[sid]

    def status(self) -> list[dict]:
        return [
            {"id": s.id, "participants": s.roster(), "lines": len(s.transcript.segments)}
            for s in self.sessions.values()
        ]

    async def close_all(self) -> None:
        participants = [p for s in self.sessions.values() for p in s.participants.values()]
        await asyncio.gather(*(p.leave() for p in participants), return_exceptions=True)
