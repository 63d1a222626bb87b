"""Meeting records: what was said in each meeting, kept per tenant; tenants' API keys; and the
background jobs of file and URL transcription.

One `Store` per process, on SQLite (a file in the user's data directory: nothing to set up,
one server) or PostgreSQL (several servers sharing their records). Both hold the same schema
(`migrations`) through the same queries (`sql`); only connecting and errors differ (`sqlite`,
`postgres`). Every method is synchronous and thread-safe: the server calls it through
`asyncio.to_thread`, and live captions reach it through `roomscribe.session.records`, whose
writer keeps them while the database is away.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StoreError, StoreUnavailableError
from .records import (
    MEETING_ID_PATTERN,
    TENANT_PATTERN,
    ApiKey,
    Job,
    Meeting,
    Segment,
    is_meeting_id,
    new_meeting_id,
    parse_meeting_id,
    parse_tenant,
)
from .sql import Store

DATABASE_FILE = "roomscribe.db"

__all__ = [
    "DATABASE_FILE",
    "MEETING_ID_PATTERN",
    "TENANT_PATTERN",
    "ApiKey",
    "Job",
    "Meeting",
    "Segment",
    "Store",
    "StoreError",
    "StoreUnavailableError",
    "default_data_dir",
    "is_meeting_id",
    "new_meeting_id",
    "open_store",
    "parse_meeting_id",
    "parse_tenant",
]


def default_data_dir() -> Path:
    """Where a store without a database URL keeps its file (~/.local/share/roomscribe on Linux)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("roomscribe", appauthor=False))


def open_store(database: str | None = None, data_dir: str | Path | None = None) -> Store:
    """The store `database` names: None for SQLite in `data_dir` (default: `default_data_dir()`),
    `sqlite:///PATH` for another SQLite file, `postgresql://...` (or `postgres://...`) for
    PostgreSQL. The schema is brought up to date on opening. StoreError when it cannot be."""
    if not database:
        directory = Path(data_dir).expanduser() if data_dir else default_data_dir()
        _private_dir(directory)
        return _sqlite(directory / DATABASE_FILE)
    if database.startswith("sqlite://"):
        path = database[len("sqlite://") :]
        if path not in ("/:memory:", ":memory:") and not os.path.isabs(path):
            raise StoreError(
                f"a SQLite URL names an absolute path, as sqlite:///var/lib/roomscribe.db, not {database!r}"
            )
        if path.endswith(":memory:"):
            return _sqlite(":memory:")
        _private_dir(Path(path).parent)
        return _sqlite(Path(path))
    scheme = database.split(":", 1)[0].lower() if ":" in database else ""
    if scheme in ("postgresql", "postgres"):
        try:
            from .postgres import PostgresDatabase
        except ImportError as exc:
            raise StoreError(f"a PostgreSQL store needs psycopg ({exc}): pip install 'roomscribe[postgres]'") from exc
        return Store(PostgresDatabase(database))
    from .database import redacted

    raise StoreError(
        f"unsupported database {redacted(database)!r}: give postgresql://USER:PASSWORD@HOST/DATABASE, "
        "or none for SQLite in the data directory"
    )


def _sqlite(path: str | Path) -> Store:
    from .sqlite import SqliteDatabase

    return Store(SqliteDatabase(path))


def _private_dir(directory: Path) -> None:
    if directory.is_dir():
        return  # someone's own directory keeps the permissions they gave it
    try:
        directory.mkdir(parents=True, mode=0o700)
        directory.chmod(0o700)  # mkdir's mode is filtered by the umask
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create the data directory {directory}: {exc}") from exc
