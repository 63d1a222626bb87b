"""No final a client received is lost: `roomscribe serve` killed with SIGKILL mid-stream, then
started again on the same store, has every final its `/stt/realtime` client was sent."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import aiohttp
import pytest

from support.asr import chunks, make_speech

CHUNK_SECONDS = 0.25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int, store_args: list[str], log) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-c", "from roomscribe.cli import main; main()", "serve", "--port", str(port), *store_args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except OSError:
            if server.poll() is not None:
                break
            time.sleep(0.3)
    server.kill()
    raise AssertionError("the server did not start")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_args(request, tmp_path) -> list[str]:
    if request.param == "sqlite":
        return ["--data-dir", str(tmp_path / "records")]
    pytest.importorskip("psycopg")
    server = request.getfixturevalue("postgres_server")
    return ["--database", server.create_database()]


def test_a_server_killed_mid_stream_keeps_every_final_its_client_received(eval_dir, manifest, store_args, tmp_path):
    speech = make_speech(
        eval_dir, manifest, ["LJ001-0001", "LJ001-0085", "LJ001-0159", "LJ001-0009"], tmp_path / "s.wav"
    )
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    server = start_server(port, store_args, log)
    received: dict[str, str] = {}

    async def stream_until_killed() -> None:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"http://127.0.0.1:{port}/stt/realtime") as ws:
                await ws.send_json(
                    {"type": "start_session", "session_id": "s1", "meeting_id": "durable-1", "language": "en"}
                )

                async def listen() -> None:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        message = json.loads(msg.data)
                        if message["type"] == "transcript":
                            received[message["segment"]["segment_id"]] = message["segment"]["text"]
                            if len(received) >= 2:  # mid-stream, with finals delivered: gone
                                server.send_signal(signal.SIGKILL)

                listener = asyncio.ensure_future(listen())
                for piece in chunks(speech.pcm, int(CHUNK_SECONDS * 32000)):
                    if listener.done():
                        break
                    try:
                        await ws.send_json({"type": "audio_chunk", "audio": base64.b64encode(piece).decode()})
                    except (ConnectionError, RuntimeError):
                        break
                    await asyncio.sleep(CHUNK_SECONDS)
                await asyncio.wait_for(listener, 60)

    try:
        asyncio.run(stream_until_killed())
        server.wait(30)
        assert server.returncode == -signal.SIGKILL, "the server was not killed mid-stream"
        assert len(received) >= 2
        server = start_server(port, store_args, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/meetings/durable-1", timeout=30) as response:
            meeting = json.loads(response.read())
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        log.close()
    stored = {s["segment_id"]: s["text"] for s in meeting["segments"]}
    for segment_id, text in received.items():
        assert stored.get(segment_id) == text, (segment_id, text, stored, (tmp_path / "server.log").read_text()[-2000:])
    assert meeting["source"] == "realtime"
