"""The store on PostgreSQL, for several servers sharing their meeting records.

A small pool of connections, one per concurrent transaction: a connection is borrowed for a
transaction and given back after it, so any thread may call the store, and a connection that
failed is dropped rather than reused. A server that stops answering must not hang a caller:
connecting gives up after `CONNECT_TIMEOUT`, a statement after `STATEMENT_TIMEOUT` (the
server cancels it), TCP keepalives and a user timeout notice a vanished network, and a
watchdog cuts a transaction whose server cannot even cancel (a stopped process).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .database import Cursor, redacted
from .errors import StoreError, StoreUnavailableError

CONNECT_TIMEOUT = 5.0  # seconds
STATEMENT_TIMEOUT = 5.0
MIGRATION_TIMEOUT = 60.0  # waiting for another process's migration, then running ours
# A transaction still waiting this long past its statement timeout has a server that cannot
# even cancel it (stopped, stuck on a disk): its socket is shut, which ends the wait.
CUT_GRACE = 2.0
POOL_SIZE = 8
IDLE_CHECK = 30.0  # a connection idle longer than this is checked before it is lent again
MIGRATION_LOCK_KEY = 0x726F6F6D73637269  # "roomscri": the advisory lock of schema migrations

_DEFAULTS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "15000",  # ms that sent data may stay unacknowledged (a network gone)
    "application_name": "roomscribe",
}


class PostgresDatabase:
    kind = "postgresql"
    types = {"real": "DOUBLE PRECISION", "blob": "BYTEA"}

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = POOL_SIZE,
        connect_timeout: float = CONNECT_TIMEOUT,
        statement_timeout: float = STATEMENT_TIMEOUT,
    ):
        self.url = redacted(url)
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise StoreError(f"bad PostgreSQL URL {self.url}: {exc}") from exc
        params.setdefault("connect_timeout", str(max(1, round(connect_timeout))))
        for name, value in _DEFAULTS.items():
            params.setdefault(name, value)
        self._params = params
        self.pool_size = pool_size
        self.statement_timeout = statement_timeout
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(pool_size)
        self._idle: list[tuple[psycopg.Connection, float]] = []
        self._deadlines: dict[int, tuple[float, psycopg.Connection]] = {}  # id(conn) -> when to cut it
        self._cut: set[int] = set()
        self._closed = False
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="roomscribe-store-watchdog", daemon=True)
        self._watchdog.start()
        # Connect now, so that a wrong URL or a server that is not there fails at start.
        try:
            with self.transaction() as cur:
                cur.one("SELECT 1")
        except StoreError as exc:
            self.close()
            raise StoreError(f"cannot open the PostgreSQL store at {self.url}: {exc}") from exc

    def _connect(self, deadline: float) -> psycopg.Connection:
        conn = psycopg.connect(autocommit=True, **self._params)  # libpq's connect_timeout bounds this
        with self._lock:
            self._deadlines[id(conn)] = (deadline, conn)
        try:
            ms = int(self.statement_timeout * 1000)
            conn.execute(f"SET statement_timeout = {ms}")
            conn.execute(f"SET lock_timeout = {ms}")
            conn.execute(f"SET idle_in_transaction_session_timeout = {ms * 6}")
        except BaseException:
            self._give_back(conn)
            raise
        return conn

    @contextmanager
    def _borrowed(self, timeout: float) -> Iterator[psycopg.Connection]:
        """A connection for one transaction, cut if it is still held `timeout` seconds on."""
        if not self._slots.acquire(timeout=self.statement_timeout):
            raise StoreUnavailableError(f"all {self.pool_size} connections to {self.url} are busy")
        deadline = time.monotonic() + timeout
        conn = None
        try:
            with self._lock:
                if self._closed:
                    raise StoreError("the store is closed")
                conn, idle_since = self._idle.pop() if self._idle else (None, 0.0)
                if conn is not None:
                    self._deadlines[id(conn)] = (deadline, conn)
            if conn is not None and time.monotonic() - idle_since > IDLE_CHECK:
                try:
                    conn.execute("SELECT 1")  # the server may have restarted since
                except psycopg.Error:
                    self._give_back(conn)  # closes it
                    conn = None
            if conn is None:
                conn = self._connect(deadline)
            yield conn
        finally:
            if conn is not None:
                self._give_back(conn)
            self._slots.release()

    def _give_back(self, conn: psycopg.Connection) -> None:
        # A connection that broke, was cut, or was left inside a transaction is not lent again.
        healthy = (
            not conn.closed and not conn.broken and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        stale: list[tuple[psycopg.Connection, float]] = []
        with self._lock:
            self._deadlines.pop(id(conn), None)
            if id(conn) in self._cut:
                self._cut.discard(id(conn))
                healthy = False
            if healthy and not self._closed:
                self._idle.append((conn, time.monotonic()))
                return
            if conn.broken:
                # The server went away or restarted: the idle connections are as dead as this
                # one, and would each fail a caller before the pool had fresh ones.
                stale, self._idle = self._idle, []
        conn.close()
        for other, _ in stale:
            other.close()

    def _watch(self) -> None:
        """Cuts the connections held past their deadline: shutting the socket (a duplicate of
        the driver's descriptor, taken while the connection cannot be given back) makes the
        driver's read fail at once, and the connection is not lent again."""
        while not self._stop.wait(0.2):
            now, late = time.monotonic(), []
            with self._lock:
                for key in [k for k, (deadline, _) in self._deadlines.items() if deadline < now]:
                    conn = self._deadlines.pop(key)[1]
                    self._cut.add(key)
                    try:
                        late.append(socket.socket(fileno=os.dup(conn.fileno())))
                    except (OSError, psycopg.Error):
                        pass  # closed meanwhile: nothing left to end
            for sock in late:
                with sock:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    @contextmanager
    def transaction(self, *, write: bool = False, timeout: float | None = None) -> Iterator[Cursor]:
        if timeout is None:
            timeout = self.statement_timeout + CUT_GRACE
        try:
            with self._borrowed(timeout) as conn, conn.transaction(), conn.cursor() as raw:
                yield Cursor(raw, "%s")
        except psycopg.Error as exc:
            raise _translated(exc, self.url) from exc

    @contextmanager
    def migration_lock(self) -> Iterator[Cursor]:
        with self.transaction(write=True, timeout=MIGRATION_TIMEOUT + CUT_GRACE) as cur:
            cur.execute(f"SET LOCAL statement_timeout = {int(MIGRATION_TIMEOUT * 1000)}")
            # Held until the transaction ends, so an error cannot leave it taken.
            cur.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK_KEY,))
            yield cur

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        self._stop.set()
        for conn, _ in idle:
            conn.close()


def _translated(exc: psycopg.Error, url: str) -> StoreError:
    # OperationalError covers a refused or lost connection and a statement cancelled by its
    # timeout; InterfaceError a connection already closed. Anything else is the statement.
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        return StoreUnavailableError(f"the PostgreSQL store at {url} is unavailable: {_first_line(exc)}")
    return StoreError(f"the PostgreSQL store at {url} refused a statement: {_first_line(exc)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
