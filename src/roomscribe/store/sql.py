"""The store: meeting records, API keys and jobs, in the SQL that SQLite and PostgreSQL share.

Every method is one transaction, synchronous and safe to call from any thread (the server
calls it through `asyncio.to_thread`, the segment writer from its own thread). Every call
about meetings names a tenant, and every statement is scoped by it: another tenant's meeting
does not exist, whatever its id. A meeting id that is not a valid id cannot name a stored
meeting, so reads answer "none" for it; writes refuse it (ValueError). A tenant's name is
checked on every call about meetings and jobs (ValueError): the caller has it from a key or
its own configuration, so a bad one is a mistake to show, not a meeting to look for.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence

from .database import Cursor, Database
from .errors import StoreError
from .keys import LAST_USED_RESOLUTION, new_key_id, new_secret, secret_hash
from .migrations import migrate
from .records import (
    JOB_STATUSES,
    MAX_SOURCE,
    ApiKey,
    Job,
    Meeting,
    Segment,
    is_meeting_id,
    new_job_id,
    parse_meeting_id,
    parse_tenant,
)

_KEY_COLUMNS = "id, tenant, label, created_at, revoked_at, last_used_at"
_MEETING_COLUMNS = (
    "m.tenant, m.id, m.source, m.title, m.user_id, m.language, m.started_at, m.ended_at, m.status, m.metadata, "
    "(SELECT COUNT(*) FROM segments s WHERE s.tenant = m.tenant AND s.meeting_id = m.id)"
)
_SEGMENT_COLUMNS = (
    "segment_id, participant, start_time, end_time, text, speaker, track, language, confidence, words, "
    "translations, revised, stored_at"
)
_JOB_COLUMNS = "id, tenant, kind, status, meeting_id, progress, error, params, result, owner, created_at, updated_at"
DAY = 86400.0

logger = logging.getLogger("roomscribe.store")


def _json(value: dict | list) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _source(source: str) -> str:
    if not isinstance(source, str) or not source or len(source) > MAX_SOURCE:
        raise ValueError(f"a meeting's source is 1 to {MAX_SOURCE} characters, not {source!r}")
    return source


class Store:
    """Meeting records, keys and jobs on one database (`open_store` opens it)."""

    def __init__(self, db: Database):
        self._db = db
        self.kind = db.kind
        self.url = db.url
        try:
            self.schema_version = migrate(db)
        except BaseException:
            db.close()
            raise

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {self.url}>"

    def status(self) -> dict:
        """What the store is (asks nothing of the database, so it answers while that is down)."""
        return {"kind": self.kind, "url": self.url, "schema_version": self.schema_version}

    # -- API keys ------------------------------------------------------------------------

    def create_key(self, tenant: str, label: str | None = None) -> tuple[ApiKey, str]:
        """A new key for `tenant`: its record, and its secret (shown once, kept only hashed)."""
        tenant = parse_tenant(tenant)
        secret, now = new_secret(), time.time()
        with self._db.transaction(write=True) as cur:
            key_id = new_key_id()
            while cur.one("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)) is not None:
                key_id = new_key_id()
            cur.execute(
                "INSERT INTO api_keys (id, tenant, label, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, tenant, label, secret_hash(secret), now),
            )
        return ApiKey(key_id, tenant, label, now, None, None), secret

    def list_keys(self, tenant: str | None = None) -> list[ApiKey]:
        """Every key (never a secret), or one tenant's; a name no tenant can have has none."""
        with self._db.transaction() as cur:
            if tenant is None:
                rows = cur.all(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
            else:
                rows = cur.all(
                    f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE tenant = ? ORDER BY created_at, id", (tenant,)
                )
        return [ApiKey(*row) for row in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Whether an active key of that id was revoked now."""
        with self._db.transaction(write=True) as cur:
            changed = cur.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (time.time(), key_id)
            )
        return changed > 0

    def tenant_for_key(self, secret: str) -> str | None:
        """The tenant an active key acts for; None for an unknown or revoked one."""
        if not secret:
            return None
        digest = secret_hash(secret)
        with self._db.transaction() as cur:
            row = cur.one("SELECT tenant, revoked_at, last_used_at FROM api_keys WHERE secret_hash = ?", (digest,))
        if row is None or row[1] is not None:
            return None
        tenant, _, last_used = row
        now = time.time()
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION:
            try:
                with self._db.transaction(write=True) as cur:
                    cur.execute("UPDATE api_keys SET last_used_at = ? WHERE secret_hash = ?", (now, digest))
            except StoreError as exc:  # bookkeeping: no reason to refuse a valid key (a busy or read-only database)
                logger.debug("could not note a key's last use: %s", exc)
        return tenant

    def has_keys(self) -> bool:
        """Whether any key was ever created (revoked ones count: the store stays locked)."""
        with self._db.transaction() as cur:
            return cur.one("SELECT 1 FROM api_keys LIMIT 1") is not None

    # -- meetings ------------------------------------------------------------------------

    def open_meeting(
        self,
        tenant: str,
        meeting_id: str,
        *,
        source: str,
        title: str | None = None,
        user_id: str | None = None,
        language: str | None = None,
        metadata: dict | None = None,
        started_at: float | None = None,
    ) -> Meeting:
        """Creates the meeting, or returns the one there is (unchanged but for an ended one
        going live again): every worker of a room may call it, at the same time."""
        tenant, meeting_id, source = parse_tenant(tenant), parse_meeting_id(meeting_id), _source(source)
        with self._db.transaction(write=True) as cur:
            cur.execute(
                "INSERT INTO meetings (tenant, id, source, title, user_id, language, started_at, ended_at, status, "
                "metadata) VALUES (?, ?, ?, ?, ?, ?, ?, NULL, 'live', ?) ON CONFLICT (tenant, id) DO NOTHING",
                (
                    tenant,
                    meeting_id,
                    source,
                    title,
                    user_id,
                    language,
                    time.time() if started_at is None else float(started_at),
                    _json(metadata or {}),
                ),
            )
            cur.execute(
                "UPDATE meetings SET status = 'live', ended_at = NULL WHERE tenant = ? AND id = ? AND status <> 'live'",
                (tenant, meeting_id),
            )
            meeting = self._meeting(cur, tenant, meeting_id)
        if meeting is None:  # deleted by another process between the two statements
            raise StoreError(f"meeting {meeting_id!r} of tenant {tenant!r} was deleted while it was opened")
        return meeting

    def end_meeting(
        self, tenant: str, meeting_id: str, *, status: str = "ended", ended_at: float | None = None
    ) -> None:
        tenant, meeting_id = parse_tenant(tenant), parse_meeting_id(meeting_id)
        if status not in ("ended", "failed"):
            raise ValueError(f"a meeting ends 'ended' or 'failed', not {status!r}")
        with self._db.transaction(write=True) as cur:
            cur.execute(
                "UPDATE meetings SET status = ?, ended_at = ? WHERE tenant = ? AND id = ?",
                (status, time.time() if ended_at is None else float(ended_at), tenant, meeting_id),
            )

    def get_meeting(self, tenant: str, meeting_id: str) -> Meeting | None:
        tenant = parse_tenant(tenant)
        if not is_meeting_id(meeting_id):
            return None
        with self._db.transaction() as cur:
            return self._meeting(cur, tenant, meeting_id)

    def list_meetings(
        self,
        tenant: str,
        *,
        limit: int = 50,
        offset: int = 0,
        since: float | None = None,
        until: float | None = None,
        source: str | None = None,
    ) -> list[Meeting]:
        """A page of the tenant's meetings, newest first; `since` <= started_at < `until`."""
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset are >= 0")
        where, params = self._filters(tenant, since, until, source)
        with self._db.transaction() as cur:
            rows = cur.all(
                f"SELECT {_MEETING_COLUMNS} FROM meetings m WHERE {where} "
                "ORDER BY m.started_at DESC, m.id DESC LIMIT ? OFFSET ?",
                (*params, int(limit), int(offset)),
            )
        return [_meeting_from(row) for row in rows]

    def count_meetings(
        self, tenant: str, *, since: float | None = None, until: float | None = None, source: str | None = None
    ) -> int:
        where, params = self._filters(tenant, since, until, source)
        with self._db.transaction() as cur:
            return int(cur.one(f"SELECT COUNT(*) FROM meetings m WHERE {where}", params)[0])

    def delete_meeting(self, tenant: str, meeting_id: str) -> bool:
        """Deletes the meeting with its segments and audio; whether there was one."""
        tenant = parse_tenant(tenant)
        if not is_meeting_id(meeting_id):
            return False
        with self._db.transaction(write=True) as cur:
            # Children first and explicitly, not trusting a connection's foreign-key settings.
            cur.execute("DELETE FROM segments WHERE tenant = ? AND meeting_id = ?", (tenant, meeting_id))
            cur.execute("DELETE FROM audio WHERE tenant = ? AND meeting_id = ?", (tenant, meeting_id))
            return cur.execute("DELETE FROM meetings WHERE tenant = ? AND id = ?", (tenant, meeting_id)) > 0

    def delete_expired(self, older_than_days: float, now: float | None = None) -> int:
        """Deletes every tenant's meetings that started more than `older_than_days` ago (with
        their segments and audio), and jobs finished as long ago; returns how many meetings."""
        if older_than_days < 0:
            raise ValueError("older_than_days is >= 0")
        cutoff = (time.time() if now is None else now) - older_than_days * DAY
        expired = "(tenant, meeting_id) IN (SELECT tenant, id FROM meetings WHERE started_at < ?)"
        with self._db.transaction(write=True) as cur:
            cur.execute(f"DELETE FROM segments WHERE {expired}", (cutoff,))
            cur.execute(f"DELETE FROM audio WHERE {expired}", (cutoff,))
            deleted = cur.execute("DELETE FROM meetings WHERE started_at < ?", (cutoff,))
            cur.execute("DELETE FROM jobs WHERE status IN ('done', 'failed') AND updated_at < ?", (cutoff,))
        return max(deleted, 0)

    # -- segments ------------------------------------------------------------------------

    def save_segments(
        self, tenant: str, meeting_id: str, segments: Sequence[Segment], *, replace: bool = False
    ) -> None:
        """Stores segments of a meeting in one transaction; a segment replaces the stored one
        of its `segment_id` (a revision, a translation added), one with no text removes it (a
        retracted caption), and with `replace` these are all the meeting's segments (a file
        transcribed again). StoreError if the meeting does not exist."""
        tenant, meeting_id = parse_tenant(tenant), parse_meeting_id(meeting_id)
        newest: dict[str, Segment] = {}
        for segment in segments:
            newest[segment.segment_id] = segment  # within one call too, the later one wins
        if not newest and not replace:
            return
        now = time.time()
        rows = [
            (
                tenant,
                meeting_id,
                s.segment_id,
                s.participant,
                s.speaker,
                s.track,
                float(s.start),
                float(s.end),
                s.text,
                s.language,
                None if s.confidence is None else float(s.confidence),
                _json(list(s.words)),
                _json(dict(s.translations)),
                1 if s.revised else 0,
                now,
            )
            for s in newest.values()
            if s.text.strip()
        ]
        retracted = [(tenant, meeting_id, s.segment_id) for s in newest.values() if not s.text.strip()]
        with self._db.transaction(write=True) as cur:
            self._require_meeting(cur, tenant, meeting_id)
            if replace:
                cur.execute("DELETE FROM segments WHERE tenant = ? AND meeting_id = ?", (tenant, meeting_id))
            if retracted:
                cur.executemany(
                    "DELETE FROM segments WHERE tenant = ? AND meeting_id = ? AND segment_id = ?", retracted
                )
            if not rows:
                return
            cur.executemany(
                "INSERT INTO segments (tenant, meeting_id, segment_id, participant, speaker, track, start_time, "
                "end_time, text, language, confidence, words, translations, revised, stored_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, meeting_id, segment_id) DO UPDATE SET participant = excluded.participant, "
                "speaker = excluded.speaker, track = excluded.track, start_time = excluded.start_time, "
                "end_time = excluded.end_time, text = excluded.text, language = excluded.language, "
                "confidence = excluded.confidence, words = excluded.words, translations = excluded.translations, "
                "revised = excluded.revised, stored_at = excluded.stored_at",
                rows,
            )

    def segments(self, tenant: str, meeting_id: str) -> list[Segment]:
        """A meeting's segments in the order they were spoken."""
        tenant = parse_tenant(tenant)
        if not is_meeting_id(meeting_id):
            return []
        with self._db.transaction() as cur:
            rows = cur.all(
                f"SELECT {_SEGMENT_COLUMNS} FROM segments WHERE tenant = ? AND meeting_id = ? "
                "ORDER BY start_time, segment_id",
                (tenant, meeting_id),
            )
        return [_segment_from(row) for row in rows]

    # -- audio ---------------------------------------------------------------------------

    def save_audio(self, tenant: str, meeting_id: str, name: str, data: bytes, content_type: str) -> None:
        """Keeps a meeting's audio under `name` (replacing audio of that name)."""
        tenant, meeting_id = parse_tenant(tenant), parse_meeting_id(meeting_id)
        if not name:
            raise ValueError("audio needs a name")
        with self._db.transaction(write=True) as cur:
            self._require_meeting(cur, tenant, meeting_id)
            cur.execute(
                "INSERT INTO audio (tenant, meeting_id, name, content_type, data, stored_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (tenant, meeting_id, name) DO UPDATE SET content_type = excluded.content_type, "
                "data = excluded.data, stored_at = excluded.stored_at",
                (tenant, meeting_id, name, content_type, bytes(data), time.time()),
            )

    def audio(self, tenant: str, meeting_id: str) -> list[tuple[str, str, bytes]]:
        """(name, content_type, data) of each piece of a meeting's audio, by name."""
        tenant = parse_tenant(tenant)
        if not is_meeting_id(meeting_id):
            return []
        with self._db.transaction() as cur:
            rows = cur.all(
                "SELECT name, content_type, data FROM audio WHERE tenant = ? AND meeting_id = ? ORDER BY name",
                (tenant, meeting_id),
            )
        return [(name, content_type, bytes(data)) for name, content_type, data in rows]

    # -- jobs ----------------------------------------------------------------------------

    def create_job(
        self,
        tenant: str,
        kind: str,
        *,
        meeting_id: str | None = None,
        params: dict | None = None,
        owner: str = "",
    ) -> Job:
        tenant = parse_tenant(tenant)
        if meeting_id is not None:
            meeting_id = parse_meeting_id(meeting_id)
        now = time.time()
        job = Job(
            id=new_job_id(),
            tenant=tenant,
            kind=kind,
            status="queued",
            meeting_id=meeting_id,
            params=dict(params or {}),
            owner=owner,
            created_at=now,
            updated_at=now,
        )
        with self._db.transaction(write=True) as cur:
            cur.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.id,
                    job.tenant,
                    job.kind,
                    job.status,
                    job.meeting_id,
                    job.progress,
                    job.error,
                    _json(job.params),
                    _json(job.result),
                    job.owner,
                    job.created_at,
                    job.updated_at,
                ),
            )
        return job

    def update_job(
        self,
        job_id: str,
        *,
        status: str | None = None,
        progress: float | None = None,
        error: str | None = None,
        result: dict | None = None,
    ) -> None:
        """Changes what is given of a job (an unknown job is left alone)."""
        changes: list[tuple[str, object]] = []
        if status is not None:
            if status not in JOB_STATUSES:
                raise ValueError(f"a job's status is one of {', '.join(JOB_STATUSES)}, not {status!r}")
            changes.append(("status", status))
        if progress is not None:
            changes.append(("progress", float(progress)))
        if error is not None:
            changes.append(("error", error))
        if result is not None:
            changes.append(("result", _json(result)))
        changes.append(("updated_at", time.time()))
        assignments = ", ".join(f"{column} = ?" for column, _ in changes)
        with self._db.transaction(write=True) as cur:
            cur.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*(v for _, v in changes), job_id))

    def get_job(self, tenant: str, job_id: str) -> Job | None:
        tenant = parse_tenant(tenant)
        with self._db.transaction() as cur:
            row = cur.one(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE tenant = ? AND id = ?", (tenant, job_id))
        return None if row is None else _job_from(row)

    def fail_interrupted_jobs(self, owner: str, reason: str) -> int:
        """Fails the queued and running jobs `owner` left behind (a restarted process)."""
        with self._db.transaction(write=True) as cur:
            changed = cur.execute(
                "UPDATE jobs SET status = 'failed', error = ?, updated_at = ? "
                "WHERE owner = ? AND status IN ('queued', 'running')",
                (reason, time.time(), owner),
            )
        return max(changed, 0)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _meeting(cur: Cursor, tenant: str, meeting_id: str) -> Meeting | None:
        row = cur.one(
            f"SELECT {_MEETING_COLUMNS} FROM meetings m WHERE m.tenant = ? AND m.id = ?", (tenant, meeting_id)
        )
        return None if row is None else _meeting_from(row)

    @staticmethod
    def _require_meeting(cur: Cursor, tenant: str, meeting_id: str) -> None:
        if cur.one("SELECT 1 FROM meetings WHERE tenant = ? AND id = ?", (tenant, meeting_id)) is None:
            raise StoreError(f"no meeting {meeting_id!r} for tenant {tenant!r}")

    @staticmethod
    def _filters(
        tenant: str, since: float | None, until: float | None, source: str | None
    ) -> tuple[str, tuple[object, ...]]:
        clauses, params = ["m.tenant = ?"], [parse_tenant(tenant)]
        if since is not None:
            clauses.append("m.started_at >= ?")
            params.append(float(since))
        if until is not None:
            clauses.append("m.started_at < ?")
            params.append(float(until))
        if source is not None:
            clauses.append("m.source = ?")
            params.append(source)
        return " AND ".join(clauses), tuple(params)


def _meeting_from(row: tuple) -> Meeting:
    tenant, id_, source, title, user_id, language, started_at, ended_at, status, metadata, count = row
    return Meeting(
        tenant=tenant,
        id=id_,
        source=source,
        title=title,
        user_id=user_id,
        language=language,
        started_at=started_at,
        ended_at=ended_at,
        status=status,
        metadata=json.loads(metadata),
        segments_count=int(count),
    )


def _segment_from(row: tuple) -> Segment:
    (segment_id, participant, start, end, text, speaker, track, language, confidence, words, translations, revised,
     stored_at) = row  # fmt: skip
    return Segment(
        segment_id=segment_id,
        participant=participant,
        start=start,
        end=end,
        text=text,
        speaker=speaker,
        track=track,
        language=language,
        confidence=confidence,
        words=json.loads(words),
        translations=json.loads(translations),
        revised=bool(revised),
        stored_at=stored_at,
    )


def _job_from(row: tuple) -> Job:
    id_, tenant, kind, status, meeting_id, progress, error, params, result, owner, created_at, updated_at = row
    return Job(
        id=id_,
        tenant=tenant,
        kind=kind,
        status=status,
        meeting_id=meeting_id,
        progress=progress,
        error=error,
        params=json.loads(params),
        result=json.loads(result),
        owner=owner,
        created_at=created_at,
        updated_at=updated_at,
    )
