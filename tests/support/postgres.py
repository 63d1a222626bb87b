"""A real PostgreSQL server for the tests, in a temporary directory, on loopback.

Debian's `postgresql` package puts its programs under /usr/lib/postgresql/VERSION/bin (CI
installs it). initdb and the server refuse to run as root, so as root they run as the
`postgres` system user, in a directory it owns. The server trusts every local connection
and listens on 127.0.0.1 only; each test that needs a database gets a fresh one
(`create_database`), and the whole cluster goes when the session ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import urllib.parse
import uuid
from pathlib import Path


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory (or the one with initdb on PATH)."""

    def version(bin_dir: str) -> int:
        name = Path(bin_dir).parent.name
        return int(name) if name.isdigit() else 0

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("pg_ctl") else None


def unavailable_reason() -> str | None:
    """Why no test server can run here (None when one can)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[postgres]'"
    if find_bin_dir() is None:
        return "PostgreSQL is not installed (no initdb/pg_ctl under /usr/lib/postgresql/*/bin or on PATH)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        if self.bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed")
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix="roomscribe-pg-"))
        self.data = self.base / "data"
        self.log = self.base / "server.log"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self.running = False

    def _run(self, program: str, *args: str, timeout: float = 60) -> None:
        proc = subprocess.run(
            [*self._as_user, str(self.bin_dir / program), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.base,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
        )
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            said = proc.stderr.strip() or proc.stdout.strip()
            raise RuntimeError(f"{program} {' '.join(args)} failed: {said}\n{log}")

    def init(self) -> PostgresServer:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-locale", "-N")
        return self

    def start(self) -> None:
        # Durability is of no use to a test cluster; without fsync it starts and writes faster.
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='{self.base}' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "30", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stops the server (`fast` disconnects clients; `immediate` does not even shut down cleanly)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")
            self.running = False

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        # Through the server's unix socket: it reaches the server from a network namespace a
        # test entered after it started (the LiveKit end-to-end tests run in one) as well.
        return f"postgresql://postgres@/{database}?host={self.base}&port={self.port}"

    def _admin(self, statement: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        name = "t_" + uuid.uuid4().hex[:12]
        self._admin(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = urllib.parse.urlsplit(url).path.lstrip("/")
        self._admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def start_server() -> PostgresServer:
    server = PostgresServer()
    try:
        server.init().start()
    except BaseException:
        server.destroy()
        raise
    return server
