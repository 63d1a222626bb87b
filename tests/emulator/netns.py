"""Move the current process into a private network namespace with a veth pair.

WebRTC (libwebrtc inside the livekit FFI, and aioice inside aiortc) skips loopback
interfaces when it gathers ICE candidates, so in a loopback-only namespace ICE never
connects.  A veth pair inside a fresh network namespace gives both sides a
non-loopback address without touching the host's network.

Only stdlib here: this module is imported from ``pytest_configure``, before anything
starts threads.  ``unshare(CLONE_NEWNET)`` moves only the *calling thread*; threads
created later by that thread (the livekit FFI's tokio runtime, aiortc's executors,
forkserver/job processes) inherit its namespace, threads that already exist do not.
Call it from the main thread, before the livekit FFI is first used.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading

__all__ = ["enter_private_network", "HOST_IP", "PEER_IP", "reason", "in_private_network"]

logger = logging.getLogger("tests.emulator.netns")

CLONE_NEWNET = 0x40000000
HOST_IP = "10.77.0.1"
PEER_IP = "10.77.0.2"
_LINKS = ("rs0", "rs1")

#: Why the namespace could not be set up (None when it was, or before the first call).
reason: str | None = None
_done = False
_result: str | None = None


def _ns_id() -> str:
    try:
        return os.readlink("/proc/thread-self/ns/net")
    except OSError:
        return ""


_host_ns = _ns_id()


def in_private_network() -> bool:
    """True once enter_private_network() succeeded (for this thread)."""
    return _result is not None and _ns_id() != _host_ns


def _already_set_up() -> bool:
    """rs0 exists here and HOST_IP is a local address: the namespace is already ours."""
    try:
        if _LINKS[0] not in {name for _, name in socket.if_nameindex()}:
            return False
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((HOST_IP, 0))
        return True
    except OSError:
        return False


def _ip(*args: str) -> None:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if proc.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")


def enter_private_network() -> str | None:
    """Enter a fresh network namespace with ``lo`` and a veth pair up.

    Returns the address to bind the emulator to (``HOST_IP``), or None when that is not
    possible; then ``reason`` says why and the process stays in its original namespace.
    Idempotent: later calls return the first call's result.
    """
    global _done, _result, reason
    if _done:
        return _result
    _done = True
    if not sys.platform.startswith("linux"):
        reason = "network namespaces need Linux"
        return None
    if threading.current_thread() is not threading.main_thread():
        reason = "enter_private_network() must run on the main thread"
        return None
    if _already_set_up():
        # Another copy of this module (imported as ``tests.emulator.netns`` and as
        # ``emulator.netns``) or an outer wrapper already did it.
        _result, reason = HOST_IP, None
        return _result
    if shutil.which("ip") is None:
        reason = "the `ip` tool (iproute2) is not installed"
        return None
    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is not None and getattr(ffi.FfiClient, "_instance", None) is not None:
        reason = "the livekit FFI already runs (its threads stay in the host namespace)"
        return None
    try:
        ntasks = len(os.listdir("/proc/self/task"))
    except OSError:
        ntasks = 1
    if ntasks > 1:
        # Native threads (e.g. BLAS pools) are harmless; a running livekit FFI is not.
        logger.info(
            "entering a network namespace with %d threads alive; only threads created later will see it", ntasks
        )
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        old_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError as e:
        reason = f"cannot open the current network namespace: {e}"
        return None
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            reason = f"unshare(CLONE_NEWNET) failed: {os.strerror(err)} (needs root or CAP_SYS_ADMIN)"
            return None
        try:
            _ip("link", "set", "lo", "up")
            _ip("link", "add", _LINKS[0], "type", "veth", "peer", "name", _LINKS[1])
            _ip("addr", "add", f"{HOST_IP}/24", "dev", _LINKS[0])
            _ip("addr", "add", f"{PEER_IP}/24", "dev", _LINKS[1])
            _ip("link", "set", _LINKS[0], "up")
            _ip("link", "set", _LINKS[1], "up")
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            reason = f"setting up the veth pair failed: {e}"
            if libc.setns(old_fd, CLONE_NEWNET) != 0:
                reason += f"; and returning to the host namespace failed: {os.strerror(ctypes.get_errno())}"
            return None
    finally:
        os.close(old_fd)
    _result = HOST_IP
    reason = None
    logger.info("entered a private network namespace (veth %s/%s)", HOST_IP, PEER_IP)
    return _result
