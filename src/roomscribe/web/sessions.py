"""Caption sessions of the embedded page: each browser tab is a participant with its own
speech stream; every participant of a session sees everyone's captions."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable

from ..engine import Event, EventType, StreamConfig
from ..live import Line, LiveSpeaker, Transcript
from ..scheduler import EngineWorker

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
        self.close_transport: Callable[[], object] | None = None
        self.left = False

    def info(self) -> dict:
        lag = self.speaker.lag if self.speaker else 0.0
        return {"id": self.id, "name": self.name, "color": self.color, "lag": round(lag, 3),
                "language": self.speaker.config.language if self.speaker else None}

    def start_speaking(self, worker: EngineWorker, config: StreamConfig) -> LiveSpeaker:
        self.speaker = LiveSpeaker(worker, config, name=self.name, transcript=self.session.transcript,
                                   on_event=self._on_event, offset=self.session.clock())
        return self.speaker

    def _on_event(self, speaker: LiveSpeaker, event: Event, line: Line | None) -> None:
        if line is None or event.type not in (EventType.INTERIM, EventType.FINAL):
            return
        self.session.broadcast(caption_message(self, line, event.lag))

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


def caption_message(participant: Participant, line: Line, lag: float) -> dict:
    return {"type": "caption", "participant": participant.id, "speaker": participant.name,
            "color": participant.color, "segment_id": line.segment_id, "text": line.text, "tail": line.tail,
            "final": line.closed, "start": round(line.start, 3), "end": round(line.end, 3),
            "language": line.language, "lag": round(lag, 3), "sent_at": time.time()}


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
        return {"type": "history", "lines": [{**line.as_dict(), "color": colors.get(line.speaker, 0)}
                                             for line in self.transcript.committed()]}


class Sessions:
    def __init__(self, worker: EngineWorker, config):
        self.worker = worker
        self.config = config
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
            if len(self.sessions) >= self.config.max_sessions:
                raise LookupError(f"the server holds its limit of {self.config.max_sessions} sessions")
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
        return [{"id": s.id, "participants": s.roster(), "lines": len(s.transcript.lines)}
                for s in self.sessions.values()]

    async def close_all(self) -> None:
        participants = [p for s in self.sessions.values() for p in s.participants.values()]
        await asyncio.gather(*(p.leave() for p in participants), return_exceptions=True)
