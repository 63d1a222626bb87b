"""What the store needs of a database, whichever it is: transactions, a migration lock, and
the few words of SQL that differ.

The queries (`sql`) and the migrations (`migrations`) are written once, in the SQL that
SQLite and PostgreSQL share (`INSERT ... ON CONFLICT`, `LIMIT`/`OFFSET`, row values), with
`?` placeholders and `{real}`/`{blob}` in table definitions; a `Database` runs them on its
driver and turns the driver's errors into `StoreError`/`StoreUnavailableError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit


class Cursor:
    """One transaction's statements, on a DB-API cursor; `placeholder` is the driver's."""

    def __init__(self, raw: Any, placeholder: str = "?"):
        self._raw = raw
        self._placeholder = placeholder

    def _sql(self, sql: str) -> str:
        return sql if self._placeholder == "?" else sql.replace("?", self._placeholder)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs a statement; returns how many rows it changed."""
        self._raw.execute(self._sql(sql), tuple(params))
        return self._raw.rowcount

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._raw.executemany(self._sql(sql), [tuple(r) for r in rows])

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        self._raw.execute(self._sql(sql), tuple(params))
        return self._raw.fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        self._raw.execute(self._sql(sql), tuple(params))
        return list(self._raw.fetchall())


class Database(Protocol):
    kind: str  # "sqlite" | "postgresql"
    url: str  # where it is, for status and messages (no password)
    types: dict[str, str]  # the column types that differ: {"real": ..., "blob": ...}

    def transaction(self, *, write: bool = False) -> AbstractContextManager[Cursor]:
        """A transaction, committed when the block ends and rolled back when it raises; driver
        errors come out as `StoreError` (`StoreUnavailableError` when the database is away)."""
        ...

    def migration_lock(self) -> AbstractContextManager[Cursor]:
        """A write transaction that no other process migrating the same database runs beside."""
        ...

    def close(self) -> None: ...


def redacted(url: str) -> str:
    """The URL without its password (for status and messages)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = userinfo.split(":", 1)[0] + "@" + host
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
