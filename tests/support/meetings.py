"""Shared pieces of the meeting-records server tests: a server on a fresh database of its own
(SQLite or PostgreSQL), requests that carry a key, a loopback media server with real speech,
`/stt/realtime` conversations, and job polling."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from roomscribe.store import Store
from roomscribe.web.config import ServerConfig
from roomscribe.web.records import records

from .serving import RunningServer, running_server

DATABASES = ["sqlite", "postgresql"]
ADMIN_KEY = "rs_admin-key-of-the-tests"


# -- servers on a database of their own -------------------------------------------------------


def fresh_database(request, tmp_path_factory) -> Iterator[str]:
    """For a fixture parametrised by DATABASES: the URL of a new, empty database."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path_factory.mktemp('records') / 'roomscribe.db'}"
        return
    postgres = request.getfixturevalue("postgres_server")
    url = postgres.create_database()
    yield url
    if postgres.running:
        postgres.drop_database(url)


def config(database: str, **options) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=0, database=database, **options)


@contextlib.contextmanager
def meeting_server(engine, database: str, **options) -> Iterator[RunningServer]:
    """`roomscribe serve` on loopback, keeping its records in `database`."""
    with running_server(engine, config(database, **options)) as server:
        yield server


def store_of(server: RunningServer) -> Store:
    kept = records(server.app)
    assert kept is not None, "the server keeps no records"
    return kept.store


# -- requests ------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]

    def json(self):
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def error(self) -> str:
        """The message of an error reply (and that it is shaped as one)."""
        doc = self.json()
        assert set(doc) == {"error"} and doc["error"]["code"] == self.status, doc
        return doc["error"]["message"]


def auth(key: str | None = None, tenant: str | None = None) -> dict[str, str]:
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if tenant:
        headers["X-Roomscribe-Tenant"] = tenant
    return headers


async def _call(method: str, url: str, timeout: float, **kwargs) -> Reply:
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as http,
        http.request(method, url, **kwargs) as response,
    ):
        body = await response.read()
        return Reply(response.status, response.content_type, body, dict(response.headers))


def call(
    method: str,
    url: str,
    *,
    key: str | None = None,
    tenant: str | None = None,
    headers: dict | None = None,
    timeout: float = 120.0,
    **kwargs,
) -> Reply:
    """One request, with `key` as a bearer token and `tenant` in X-Roomscribe-Tenant."""
    return asyncio.run(_call(method, url, timeout, headers={**auth(key, tenant), **(headers or {})}, **kwargs))


def healthy(url: str) -> bool:
    reply = call("GET", url + "/health")
    return reply.status == 200 and reply.json() == {"status": "ok"}


def wait_for_job(url: str, job_id: str, key: str | None = None, timeout: float = 90.0) -> dict:
    """Polls GET /jobs/{id} until the job is done or failed."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        reply = call("GET", f"{url}/jobs/{job_id}", key=key)
        assert reply.status == 200, reply.body
        job = reply.json()
        seen.append((job["status"], job["progress"]))
        if job["status"] in ("done", "failed"):
            job["seen"] = seen
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.2)


def wait_for_meeting(url: str, meeting_id: str, key: str | None = None, timeout: float = 90.0) -> dict:
    """Polls GET /meetings/{id} until the meeting exists and has ended."""
    deadline = time.monotonic() + timeout
    while True:
        reply = call("GET", f"{url}/meetings/{meeting_id}", key=key)
        if reply.status == 200 and reply.json()["status"] == "ended":
            return reply.json()
        assert reply.status in (200, 404), reply.body
        assert time.monotonic() < deadline, f"meeting {meeting_id} not stored within {timeout} s"
        time.sleep(0.2)


# -- a media server on loopback -------------------------------------------------------------------


@dataclass
class MediaFiles:
    port: int
    requests: list[str] = field(default_factory=list)  # the path of every request

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextlib.contextmanager
def media_files(files: dict[str, bytes]) -> Iterator[MediaFiles]:
    """Serves `files` as /files/NAME on 127.0.0.1, with /redirect?to=URL (a 302 anywhere) and
    /slow (an answer that does not come until the server stops)."""
    loop = asyncio.new_event_loop()
    holder: dict = {}
    started = threading.Event()
    kinds = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}

    async def serve_file(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type=kinds.get(name.rsplit(".", 1)[-1], "audio/wav"))

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["to"])

    async def slow(request: web.Request) -> web.Response:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(holder["stop"].wait(), 60)
        raise web.HTTPServiceUnavailable()

    @web.middleware
    async def note(request: web.Request, handler):
        holder["server"].requests.append(request.path_qs)
        return await handler(request)

    async def start():
        holder["stop"] = asyncio.Event()
        app = web.Application(middlewares=[note])
        app.router.add_get("/files/{name}", serve_file)
        app.router.add_get("/redirect", redirect)
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        holder.update(runner=runner, server=MediaFiles(site._server.sockets[0].getsockname()[1]))

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="meeting-media-server", daemon=True)
    thread.start()
    assert started.wait(10)
    try:
        yield holder["server"]
    finally:

        async def stop():
            holder["stop"].set()
            await holder["runner"].cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# -- /stt/realtime ---------------------------------------------------------------------------------


def audio_chunk(pcm: bytes) -> str:
    return json.dumps({"type": "audio_chunk", "audio": base64.b64encode(pcm).decode()})


async def realtime(
    url: str, messages: list, *, key: str | None = None, expect: int | None = None, timeout: float = 120.0
) -> list[dict]:
    """Opens /stt/realtime, sends `messages` (str: text frames, bytes: binary frames) and
    returns every message the server sent until it closed (or, with `expect`, until that many
    came after everything was sent: then the client closes)."""
    received: list[dict] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url.replace("http://", "ws://") + "/stt/realtime", headers=auth(key)) as ws,
    ):

        async def read():
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    received.append(json.loads(msg.data))

        reader = asyncio.ensure_future(read())
        for message in messages:
            if isinstance(message, bytes):
                await ws.send_bytes(message)
            else:
                await ws.send_str(message)
        if expect is not None:  # the client leaves once it has that many answers
            deadline = time.monotonic() + timeout
            while len(received) < expect and not reader.done():
                assert time.monotonic() < deadline, received
                await asyncio.sleep(0.02)
            await ws.close()
        await asyncio.wait_for(reader, timeout)
    return received


def transcripts_as_last_pushed(messages: list[dict]) -> list[dict]:
    """The segments of the `transcript` messages among `messages`, each as last pushed (a later
    push of a segment id replaces it; one with no text retracts it), in the order they started."""
    latest = {m["segment"]["segment_id"]: m["segment"] for m in messages if m["type"] == "transcript"}
    return sorted((s for s in latest.values() if s["text"]), key=lambda s: (s["start"], s["segment_id"]))
