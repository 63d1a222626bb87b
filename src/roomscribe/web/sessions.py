"""Caption sessions of the embedded page: each browser tab is a participant with its own
live speaker; every participant of a session sees everyone's captions, and the session
keeps the transcript (a sink every speaker of the session shares).

Translation: each participant (a viewer too) reads captions in one language, or as spoken.
The session translates every final into the union of the languages its participants read
(one `TranslationTargets` shared by the stages of all its speakers, on the process's one
`TranslationService`); caption messages carry the translations that exist so far, and each
page shows its own language where a translation exists, the original until then. The
session's translation state ("off", "on", "failing: ...", "unavailable: ...") goes to every
page whenever it or the languages change."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable

from ..engine import StreamConfig
from ..session import Caption, LiveSpeaker, Pipeline, Transcript
from ..session.control import ControlError
from ..session.records import MeetingRecorder, MeetingRecords
from ..session.scheduler import EngineWorker
from ..session.translation import TranslationStage, TranslationTargets
from ..store import new_meeting_id
from ..translation import TranslationService
from .tenants import LOCAL_TENANT

logger = logging.getLogger("roomscribe.web")

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EMPTY_SESSION_TTL = 600.0  # an empty session's transcript stays downloadable this long
TRANSLATION_GRACE = 20.0  # seconds a leaving speaker's last translations may still arrive


class Participant:
    def __init__(self, session: Session, name: str, color: int):
        self.id = "P_" + secrets.token_hex(6)
        self.session = session
        self.name = name
        self.color = color
        self.speaker: LiveSpeaker | None = None
        self.reads: str | None = None  # the language this page shows captions in (None: as spoken)
        self.send: Callable[[dict], None] | None = None  # set once the data channel is open
        self.close_transport: Callable[[], Awaitable[None]] | None = None
        self.left = False
        self._stage: TranslationStage | None = None

    def info(self) -> dict:
        lag = self.speaker.lag if self.speaker else 0.0
        return {
            "id": self.id,
            "name": self.name,
            "color": self.color,
            "lag": round(lag, 3),
            "language": self.speaker.language if self.speaker else None,
            "reads": self.reads,
        }

    def start_speaking(self, worker: EngineWorker, config: StreamConfig) -> LiveSpeaker:
        stages = []
        service = self.session.translation_service
        if service is not None:
            self._stage = TranslationStage(
                service,
                self.session.translation_targets,
                self.session.glossary,
                audio_of=lambda c: self.speaker.caption_audio(c),  # the speaker made below keeps its audio
            )
            stages.append(self._stage)
        # Stored before it is sent: a final a page has seen is in the meeting's record.
        recorder = self.session.recorder
        stored = [recorder.sink(self.session.started_at - recorder.started_at)] if recorder else []
        pipeline = Pipeline(stages, sinks=[self.session.keep, *stored, self._broadcast])
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
        if self.session.emptied_at is not None:
            await self.session.end_record()
        self.session.broadcast({"type": "participants", "participants": self.session.roster()})
        if self.reads is not None:
            self.session.update_translation()  # a language nobody reads any more is dropped
        if self._stage is not None:
            # The last sentences' translations still reach the others and the transcript;
            # then whatever of this speaker is still queued is dropped.
            asyncio.get_running_loop().call_later(TRANSLATION_GRACE, self._stage.close)
        if self.close_transport is not None:
            await self.close_transport()


def caption_message(participant: Participant, caption: Caption) -> dict:
    message = {
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
    if caption.translations:
        # Every translation of the segment so far (each page shows the one it reads);
        # `translated` names the ones this update adds. Not final, it is a provisional
        # translation of `text`, the open line's words up to a clause: a page shows it
        # (and the words after it as spoken) until the final's translation comes.
        message["translations"] = dict(caption.translations)
        message["translated"] = list(caption.translated)
    return message


class Session:
    def __init__(
        self,
        session_id: str,
        translation_service: TranslationService | None = None,
        translation_unavailable: str | None = None,
        tenant: str = LOCAL_TENANT,
    ):
        self.id = session_id
        self.tenant = tenant
        self.meeting_id = new_meeting_id()  # the record of this session (a session id is the pages' name for it)
        self.recorder: MeetingRecorder | None = None
        self._records: MeetingRecords | None = None
        self._recording = False  # the meeting is open for this session (someone is in it)
        self.created = time.monotonic()
        self.started_at = time.time()
        self.transcript = Transcript()
        self.participants: dict[str, Participant] = {}
        self.emptied_at: float | None = self.created
        self._joined = 0
        self.translation_targets = TranslationTargets()
        self.translation_service: TranslationService | None = None
        self.translation_unavailable = "no translator on this server"
        self._remove_listener: Callable[[], None] | None = None
        self._announced: dict | None = None
        self.use_translation(translation_service, translation_unavailable)

    def use_translation(self, service: TranslationService | None, unavailable: str | None = None) -> None:
        """The translation this session's speakers use (the door's; once, before speakers join)."""
        if unavailable:
            self.translation_unavailable = unavailable
        if service is self.translation_service:
            return
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None
        self.translation_service = service
        if service is not None:
            try:
                self._remove_listener = service.add_state_listener(lambda *_: self.announce_translation())
            except RuntimeError:  # no running loop (a session made outside the server): no live state
                pass

    async def record(self, kept: MeetingRecords | None) -> None:
        """Keep the session as a meeting (again, when it had emptied and ended)."""
        if kept is None or self._recording:
            return
        self._recording = True  # set before the wait: a second tab joining now does not open it twice
        self._records = kept
        self.recorder = await kept.open_live(self.tenant, self.meeting_id, source="page", title=self.id)

    async def end_record(self) -> None:
        """The session emptied: its meeting ends (until someone joins again)."""
        if self._recording and self._records is not None and self.recorder is not None:
            self._recording = False
            await self._records.end_live(self.recorder)

    def clock(self) -> float:
        return time.monotonic() - self.created

    def keep(self, caption: Caption) -> None:
        """The session's transcript keeps each segment's latest state and final translations
        (a provisional translation is an older state of an open line: not kept)."""
        if caption.translated and not caption.final:
            return
        self.transcript(caption)

    def join(self, name: str | None) -> Participant:
        self._joined += 1
        name = (name or "").strip()[:40] or f"Speaker {self._joined}"
        participant = Participant(self, name, color=(self._joined - 1) % 8)
        self.participants[participant.id] = participant
        self.emptied_at = None
        return participant

    def roster(self) -> list[dict]:
        return [p.info() for p in self.participants.values()]

    def glossary(self) -> tuple[str, ...]:
        """Names a translation keeps as written: the session's participants'."""
        return tuple(dict.fromkeys(p.name for p in self.participants.values() if p.name.strip()))

    # -- translation ---------------------------------------------------------------------
    def set_reading(self, participant: Participant, language: str | None) -> bool:
        """The language a participant reads (None: as spoken); the session then translates
        into every language someone reads. A `ControlError` when that is too many. True when
        the session's translation changed (and every page was told)."""
        before = participant.reads
        participant.reads = language
        try:
            return self.update_translation()
        except ControlError:
            participant.reads = before
            raise

    def update_translation(self) -> bool:
        languages = [p.reads for p in self.participants.values() if p.reads is not None]
        self.translation_targets.set(list(dict.fromkeys(languages)))
        if self.translation_service is not None and self.translation_targets:
            self.translation_service.prepare()  # the model loads while the page's first sentence is said
        return self.announce_translation()

    def translation_state(self) -> str:
        """The session's translation: off, on, failing: <why> or unavailable: <why> (as the
        LiveKit agent says it in `roomscribe.translation`)."""
        if not self.translation_targets:
            return "off"
        service = self.translation_service
        if service is None:
            return f"unavailable: {self.translation_unavailable}"
        if service.state == "failing":
            return f"failing: {service.last_error}"
        return "on"

    def translation_notes(self) -> dict[str, str]:
        """What the pages should know of their languages: those the model translates badly into."""
        if self.translation_service is None:
            return {}
        weak = getattr(self.translation_service.translator, "weak_targets", None) or {}
        return {t: weak[t] for t in self.translation_targets.languages if t in weak}

    def translation_message(self) -> dict:
        message = {
            "type": "translation",
            "state": self.translation_state(),
            "languages": list(self.translation_targets.languages),
        }
        notes = self.translation_notes()
        if notes:
            message["notes"] = notes  # language -> a note for the pages that read it
        return message

    def announce_translation(self) -> bool:
        """Tell every page the session's translation state, when it changed (True if so)."""
        message = self.translation_message()
        if message == self._announced:
            return False
        self._announced = message
        if message["state"].startswith(("failing", "unavailable")):
            logger.warning("session %s: translation is %s", self.id, message["state"])
        self.broadcast(message)
        return True

    # -- messages ------------------------------------------------------------------------
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

    def close(self) -> None:
        """The session is forgotten: stop listening to the translation service."""
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None


class Sessions:
    def __init__(self, max_sessions: int):
        self.max_sessions = max_sessions
        self.sessions: dict[tuple[str, str], Session] = {}  # by (tenant, session id): each tenant's own ids

    def get(self, session_id: str, tenant: str = LOCAL_TENANT) -> Session | None:
        return self.sessions.get((tenant, session_id))

    def open(
        self,
        session_id: str | None,
        translation_service: TranslationService | None = None,
        translation_unavailable: str | None = None,
        tenant: str = LOCAL_TENANT,
    ) -> Session:
        """The tenant's session to join (a new one when no id is given). ValueError/LookupError
        when refused."""
        self._expire()
        session_id = session_id or secrets.token_urlsafe(6)
        if not SESSION_ID.match(session_id):
            raise ValueError("a session id is 1-64 letters, digits, '-' or '_'")
        session = self.sessions.get((tenant, session_id))
        if session is None:
            if len(self.sessions) >= self.max_sessions:
                raise LookupError(f"the server holds its limit of {self.max_sessions} sessions")
            session = Session(session_id, translation_service, translation_unavailable, tenant)
            self.sessions[(tenant, session_id)] = session
        return session

    def speakers(self) -> int:
        return sum(len(s.participants) for s in self.sessions.values())

    def _expire(self) -> None:
        now = time.monotonic()
        for key, session in list(self.sessions.items()):
            if session.emptied_at is not None and now - session.emptied_at > EMPTY_SESSION_TTL:
                del self.sessions[key]
                session.close()

    def status(self) -> list[dict]:
        return [
            {
                "id": s.id,
                "participants": s.roster(),
                "lines": len(s.transcript.segments),
                "translation": {"state": s.translation_state(), "languages": list(s.translation_targets.languages)},
            }
            for s in self.sessions.values()
        ]

    async def close_all(self) -> None:
        participants = [p for s in self.sessions.values() for p in s.participants.values()]
        await asyncio.gather(*(p.leave() for p in participants), return_exceptions=True)
        for session in self.sessions.values():
            session.close()
