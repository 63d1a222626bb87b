"""The records the store keeps: API keys, meetings, their segments, background jobs; and the
names a tenant and a meeting may have.

Times are epoch seconds, except a segment's `start`/`end` and its words' times, which are
seconds from the meeting's start (the meeting clock), so a meeting's transcript reads the
same whichever door recorded it.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

TENANT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
MEETING_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
_TENANT = re.compile(TENANT_PATTERN)
_MEETING_ID = re.compile(MEETING_ID_PATTERN)

MAX_SOURCE = 32
MEETING_STATUSES = ("live", "ended", "failed")
JOB_STATUSES = ("queued", "running", "done", "failed")


def parse_tenant(name: str) -> str:
    """A tenant's name as given, or ValueError saying what a name may be."""
    if not isinstance(name, str) or not _TENANT.fullmatch(name):
        raise ValueError(
            f"a tenant is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit, not {name!r}"
        )
    return name


def parse_meeting_id(value: str) -> str:
    """A meeting id as given, or ValueError saying what an id may be."""
    if not isinstance(value, str) or not _MEETING_ID.fullmatch(value):
        raise ValueError(
            "a meeting id is 1 to 128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit, "
            f"not {value!r}"
        )
    return value


def is_meeting_id(value: object) -> bool:
    return isinstance(value, str) and _MEETING_ID.fullmatch(value) is not None


def new_meeting_id() -> str:
    # token_urlsafe may start with '-' or '_', which the prefix makes harmless.
    return "m_" + secrets.token_urlsafe(12)[:16]


def new_job_id() -> str:
    return "j_" + secrets.token_urlsafe(12)[:16]


@dataclass(frozen=True)
class ApiKey:
    id: str  # the public id `keys list` shows and `keys revoke` takes (never the secret)
    tenant: str
    label: str | None
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass
class Meeting:
    tenant: str
    id: str
    source: str  # the door it came through: "livekit", "page", "asr", "upload", "url", "realtime"
    title: str | None = None
    user_id: str | None = None
    language: str | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    status: str = "live"  # "live" | "ended" | "failed"
    metadata: dict = field(default_factory=dict)
    segments_count: int = 0  # as the store counted them when it read the meeting

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "source": self.source,
            "title": self.title,
            "user_id": self.user_id,
            "language": self.language,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "status": self.status,
            "metadata": dict(self.metadata),
            "segments_count": self.segments_count,
        }


@dataclass
class Segment:
    segment_id: str
    participant: str
    start: float  # seconds from the meeting's start
    end: float
    text: str
    speaker: str | None = None  # a voice within a track that carries several ("S1", "S2", ...)
    track: str = ""
    language: str | None = None
    confidence: float | None = None  # the mean probability of its words
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end", "probability"}, meeting clock
    translations: dict[str, str] = field(default_factory=dict)  # language -> text
    revised: bool = False
    stored_at: float = 0.0  # epoch seconds of the last write

    def as_dict(self) -> dict:
        return {
            "segment_id": self.segment_id,
            "participant": self.participant,
            "speaker": self.speaker,
            "track": self.track,
            "start": round(self.start, 3),
            "end": round(self.end, 3),
            "text": self.text,
            "language": self.language,
            "confidence": None if self.confidence is None else round(self.confidence, 3),
            "words": [dict(w) for w in self.words],
            "translations": dict(self.translations),
            "revised": self.revised,
        }


@dataclass
class Job:
    id: str
    tenant: str
    kind: str  # what it does: "url", "upload", ...
    status: str  # "queued" | "running" | "done" | "failed"
    meeting_id: str | None = None
    progress: float = 0.0
    error: str | None = None
    params: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    owner: str = ""  # the process running it, so a restarted process can fail what it left behind
    created_at: float = 0.0
    updated_at: float = 0.0

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "kind": self.kind,
            "status": self.status,
            "meeting_id": self.meeting_id,
            "progress": self.progress,
            "error": self.error,
            "params": dict(self.params),
            "result": dict(self.result),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
