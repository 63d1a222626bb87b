"""The example frontends in examples/web, built from npm (livekit-client and components-react,
bundled by esbuild) for the browser tests, and a static server like the README's
`python -m http.server -d examples/web`.

`built_examples()` runs `npm ci` when node_modules is missing or older than package-lock.json
and `npm run build` when dist is missing or older than its sources, at most once per test
process, under a file lock so parallel test processes do not build at the same time. It returns
examples/web, or None with the reason in `why_not_built()` (npm missing, no registry, a failed
build) for the tests to skip with."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "web"
OUTPUTS = ("dist/captions.js", "dist/react.js")
INSTALL_TIMEOUT, BUILD_TIMEOUT = 900, 300

_built: tuple[Path | None, str] | None = None  # this process's answer, once asked


def built_examples() -> Path | None:
    """examples/web with its bundles up to date, or None (see why_not_built())."""
    global _built
    if _built is None:
        _built = _build(EXAMPLES)
    return _built[0]


def why_not_built() -> str:
    """Why built_examples() returned None ("" when it did not)."""
    built_examples()
    assert _built is not None
    return _built[1]


def _build(root: Path) -> tuple[Path | None, str]:
    npm = shutil.which("npm")
    if npm is None:
        return None, "npm not found: install Node.js and npm to build examples/web"
    with _locked(root):
        lock = root / "package-lock.json"
        stamp = root / "node_modules" / ".package-lock.json"  # npm writes it when an install completes
        if not stamp.is_file() or _mtime(stamp) < _mtime(lock):
            failed = _npm(npm, root, ["ci", "--no-audit", "--no-fund"], INSTALL_TIMEOUT)
            if failed and "EAI_AGAIN" in failed:  # a name lookup that failed for now: once more
                time.sleep(5)
                failed = _npm(npm, root, ["ci", "--no-audit", "--no-fund"], INSTALL_TIMEOUT)
            if failed:
                return None, f"npm ci failed in {root} (no registry?): {failed}"
        sources = [lock, root / "package.json", *(p for p in (root / "src").rglob("*") if p.is_file())]
        outputs = [root / name for name in OUTPUTS]
        if not all(p.is_file() for p in outputs) or min(map(_mtime, outputs)) < max(map(_mtime, sources)):
            failed = _npm(npm, root, ["run", "build"], BUILD_TIMEOUT)
            if failed:
                return None, f"npm run build failed in {root}: {failed}"
    return root, ""


def _npm(npm: str, cwd: Path, args: list[str], timeout: float) -> str:
    """Run npm; "" when it succeeded, else the exit status and the last lines it printed."""
    try:
        done = subprocess.run(
            [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        return f"timed out after {timeout} s\n{_tail(out.decode(errors='replace'))}"
    if done.returncode == 0:
        return ""
    return f"exit {done.returncode}\n{_tail(done.stdout + done.stderr)}"


def _tail(text: str, lines: int = 12) -> str:
    """The last lines npm printed, without the stack frames of its errors."""
    kept = [line for line in text.strip().splitlines() if not re.match(r"(npm (error|ERR!))?\s+at ", line)]
    return "\n".join(kept[-lines:])


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """An exclusive lock per checkout, outside the tree (nothing to ignore or clean up)."""
    name = hashlib.sha1(str(root).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"roomscribe-examples-{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def static_site(root: Path) -> Iterator[str]:
    """`python -m http.server -d ROOT` on loopback, on a free port: its base URL. (A page on
    127.0.0.1 is a secure context, so it may use the microphone and the clipboard.)"""
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass
