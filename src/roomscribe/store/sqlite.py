"""The store on SQLite: one file, in WAL mode, for a single server.

One connection, used under a lock: SQLite runs one write at a time anyway, and a lock around
each transaction makes the connection safe from every thread (the background writer and
`asyncio.to_thread`). Other processes on the same file (`roomscribe keys create` beside a
running server) wait for each other through the busy timeout; write transactions begin
IMMEDIATE so two writers never both hold a read snapshot they cannot upgrade.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .database import Cursor
from .errors import StoreError, StoreUnavailableError

BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's write before it fails


class SqliteDatabase:
    kind = "sqlite"
    types = {"real": "REAL", "blob": "BLOB"}

    def __init__(self, path: str | Path):
        self.path = str(path)
        self.url = "sqlite:///:memory:" if self.path == ":memory:" else "sqlite://" + self.path
        self._lock = threading.RLock()
        self._closed = False
        try:
            if self.path != ":memory:" and not os.path.exists(self.path):
                # Transcripts and key hashes are nobody else's business; SQLite gives its WAL
                # and shared-memory files the database file's permissions.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
            self._wal()
            # Safe in WAL: a power cut may lose the last commits, never the database.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            self._conn.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the SQLite store at {self.path}: {exc}") from exc

    def _wal(self) -> None:
        """Switch the file to WAL. Switching takes the file to itself for a moment and does not
        wait through the busy timeout: another process opening the same new file at the same
        moment gets "locked" at once, so it tries again a while."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Cursor]:
        with self._lock:
            if self._closed:
                raise StoreError("the store is closed")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield Cursor(conn.cursor())
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the error being raised says more than this one
                raise _translated(exc, self.path) from exc

    def migration_lock(self):
        return self.transaction(write=True)  # BEGIN IMMEDIATE already excludes every other writer

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()


def _translated(exc: sqlite3.Error, path: str) -> StoreError:
    # OperationalError is the database being locked past the busy timeout, the disk full or
    # gone: things that pass. The rest (a constraint, a bad statement) will not.
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailableError(f"the SQLite store at {path} is unavailable: {exc}")
    return StoreError(f"the SQLite store at {path} refused a statement: {exc}")
