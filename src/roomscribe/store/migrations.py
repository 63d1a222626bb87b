"""The store's schema, as a list of numbered migrations applied when a store is opened.

`schema_version` keeps a row per migration applied. Opening a store applies the ones it
lacks, in order, in one transaction under the database's migration lock (`BEGIN IMMEDIATE`
on SQLite, an advisory lock on PostgreSQL), so two processes opening the same database at
once migrate it once. A database newer than this code is refused rather than written to.

A new migration is appended with the next number; an applied one is never edited. Column
types that differ between the databases are written `{real}` (epoch seconds, DOUBLE PRECISION
on PostgreSQL, whose REAL is only 4 bytes) and `{blob}`; JSON is kept as TEXT on both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .database import Database
from .errors import StoreError


@dataclass(frozen=True)
class Migration:
    version: int
    summary: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "api keys, meetings, segments, audio, jobs",
        (
            """CREATE TABLE api_keys (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                label TEXT,
                secret_hash TEXT NOT NULL UNIQUE,
                created_at {real} NOT NULL,
                revoked_at {real},
                last_used_at {real}
            )""",
            "CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at)",
            """CREATE TABLE meetings (
                tenant TEXT NOT NULL,
                id TEXT NOT NULL,
                source TEXT NOT NULL,
                title TEXT,
                user_id TEXT,
                language TEXT,
                started_at {real} NOT NULL,
                ended_at {real},
                status TEXT NOT NULL,
                metadata TEXT NOT NULL,
                PRIMARY KEY (tenant, id)
            )""",
            "CREATE INDEX meetings_by_start ON meetings (tenant, started_at)",
            "CREATE INDEX meetings_by_age ON meetings (started_at)",
            """CREATE TABLE segments (
                tenant TEXT NOT NULL,
                meeting_id TEXT NOT NULL,
                segment_id TEXT NOT NULL,
                participant TEXT NOT NULL,
                speaker TEXT,
                track TEXT NOT NULL,
                start_time {real} NOT NULL,
                end_time {real} NOT NULL,
                text TEXT NOT NULL,
                language TEXT,
                confidence {real},
                words TEXT NOT NULL,
                translations TEXT NOT NULL,
                revised INTEGER NOT NULL,
                stored_at {real} NOT NULL,
                PRIMARY KEY (tenant, meeting_id, segment_id),
                FOREIGN KEY (tenant, meeting_id) REFERENCES meetings (tenant, id) ON DELETE CASCADE
            )""",
            "CREATE INDEX segments_in_order ON segments (tenant, meeting_id, start_time)",
            """CREATE TABLE audio (
                tenant TEXT NOT NULL,
                meeting_id TEXT NOT NULL,
                name TEXT NOT NULL,
                content_type TEXT NOT NULL,
                data {blob} NOT NULL,
                stored_at {real} NOT NULL,
                PRIMARY KEY (tenant, meeting_id, name),
                FOREIGN KEY (tenant, meeting_id) REFERENCES meetings (tenant, id) ON DELETE CASCADE
            )""",
            """CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                tenant TEXT NOT NULL,
                kind TEXT NOT NULL,
                status TEXT NOT NULL,
                meeting_id TEXT,
                progress {real} NOT NULL,
                error TEXT,
                params TEXT NOT NULL,
                result TEXT NOT NULL,
                owner TEXT NOT NULL,
                created_at {real} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            "CREATE INDEX jobs_by_owner ON jobs (owner, status)",
            "CREATE INDEX jobs_by_age ON jobs (updated_at)",
        ),
    ),
)

LATEST = MIGRATIONS[-1].version


def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Brings the database up to the newest migration; returns its schema version."""
    latest = migrations[-1].version if migrations else 0
    with db.migration_lock() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            "version INTEGER PRIMARY KEY, summary TEXT NOT NULL, applied_at {real} NOT NULL)".format(**db.types)
        )
        current = cur.one("SELECT MAX(version) FROM schema_version")[0] or 0
        if current > latest:
            raise StoreError(
                f"the database at {db.url} has schema version {current}, newer than this roomscribe knows "
                f"({latest}): upgrade roomscribe"
            )
        for migration in migrations:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                cur.execute(statement.format(**db.types))
            cur.execute(
                "INSERT INTO schema_version (version, summary, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.summary, time.time()),
            )
            current = migration.version
    return current
