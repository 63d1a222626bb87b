"""`roomscribe serve`: one HTTP server, every door onto one shared scheduler.

- `/` the caption page (WebRTC microphone → captions on a data channel), `/whip` its
  offer/answer, `/sessions/{id}/transcript` its downloads;
- `/asr` the WhisperLiveKit-compatible WebSocket;
- `/transcribe` and `/v1/audio/transcriptions` (OpenAI-compatible) for files;
- `/health` and `/status`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ..engine import StreamConfig
from ..scheduler import EngineWorker

logger = logging.getLogger("roomscribe.web")

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = ("/", "/health", "/favicon.ico")  # the page itself holds no data


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    certfile: str | None = None
    keyfile: str | None = None
    api_key: str | None = None  # required for every data route when set
    policy: str = "localagreement"
    language: str | None = None
    max_upload_mb: float = 200.0
    max_file_minutes: float = 180.0
    max_file_jobs: int = 1  # files transcribed at once (they share the model with live streams)
    max_queued_files: int = 8
    max_sessions: int = 64
    max_live_streams: int = 64  # speakers across the page and /asr


# The app's shared state (the door modules read it from the request's app).
CONFIG_KEY = web.AppKey("config", ServerConfig)
WORKER_KEY = web.AppKey("worker", EngineWorker)
STARTED_KEY = web.AppKey("started", float)
SESSIONS_KEY = web.AppKey("sessions", object)  # sessions.Sessions
FILES_KEY = web.AppKey("files", object)  # files.FileJobs
ASR_CONNECTIONS_KEY = web.AppKey("asr_connections", set)
PEERS_KEY = web.AppKey("peers", dict)  # participant id -> sessions.Participant


class ConfigError(ValueError):
    """A server configuration that must not start (e.g. exposed without a key)."""


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(config: ServerConfig, allow_no_auth: bool = False) -> list[str]:
    """Refuse to expose the server without a key; returns warnings to print."""
    warnings = []
    if not is_loopback(config.host):
        if not config.api_key and not allow_no_auth:
            raise ConfigError(f"listening on {config.host} exposes the server beyond this machine: set "
                              "ROOMSCRIBE_API_KEY (clients send it as 'Authorization: Bearer KEY'), or pass "
                              "--no-auth to allow anyone on the network")
        if not config.certfile:
            warnings.append("no TLS: browsers only give the microphone to pages served over https "
                            "(--certfile/--keyfile) or from localhost")
    if bool(config.certfile) != bool(config.keyfile):
        raise ConfigError("--certfile and --keyfile go together")
    return warnings


def json_error(status: int, message: str, **extra) -> web.Response:
    """Errors in the shape OpenAI clients read: {"error": {"message", "type", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "code": status, **extra}}
    return web.json_response(body, status=status)


def _authorized(request: web.Request, key: str) -> bool:
    header = request.headers.get("Authorization", "")
    given = header[7:].strip() if header.lower().startswith("bearer ") else request.query.get("key", "")
    return hmac.compare_digest(given.encode(), key.encode())


@web.middleware
async def _guard(request: web.Request, handler):
    """Auth for every data route, and a clear JSON error for anything that goes wrong."""
    key = request.app[CONFIG_KEY].api_key
    if key and request.path not in PUBLIC_PATHS and not request.path.startswith("/static/") \
            and not _authorized(request, key):
        return json_error(401, "missing or wrong API key (send 'Authorization: Bearer KEY' or ?key=KEY)")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason if not exc.text or exc.text.startswith(str(exc.status))
                          else exc.text)
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # the client went away: nothing to answer, nothing wrong with the server
    except Exception:  # noqa: BLE001 - one broken request must not take the server down
        logger.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error (logged on the server)")


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    app = request.app
    worker: EngineWorker = app[WORKER_KEY]
    return web.json_response({
        "uptime": round(time.monotonic() - app[STARTED_KEY], 1),
        "models": [worker.engine.model_name],
        "scheduler": worker.status(),
        "sessions": app[SESSIONS_KEY].status(),
        "asr_connections": len(app[ASR_CONNECTIONS_KEY]),
        "files": app[FILES_KEY].status(),
    })


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def stream_config(config: ServerConfig, language: str | None, policy: str | None,
                  task: str | None = None) -> StreamConfig:
    """A live stream's options from a client's query (ValueError when they are bad)."""
    from ..live import whisper_language

    policy = (policy or config.policy).lower()
    if policy not in ("localagreement", "alignatt"):
        raise ValueError(f"unknown policy {policy!r}: use localagreement or alignatt")
    lang = config.language if language is None else language
    return StreamConfig(policy=policy, language=whisper_language(lang), task=whisper_task(task))


def whisper_task(task: str | None) -> str:
    """`transcribe` (captions as spoken) or `translate` (Whisper's own translation into English)."""
    task = (task or "transcribe").lower()
    if task not in ("transcribe", "translate"):
        raise ValueError(f"unknown task {task!r}: use transcribe or translate (into English)")
    return task


def build_app(config: ServerConfig, worker: EngineWorker) -> web.Application:
    from .asr_socket import asr_socket
    from .files import (
        FileJobs,
        openai_transcriptions,
        openai_translations,
        transcribe_upload,
    )
    from .sessions import Sessions
    from .webrtc import add_routes as add_webrtc_routes

    # Uploads are read in pieces with their own limit (files.py); this only bounds other bodies.
    app = web.Application(middlewares=[_guard], client_max_size=1024 ** 2)
    app[CONFIG_KEY] = config
    app[WORKER_KEY] = worker
    app[STARTED_KEY] = time.monotonic()
    app[SESSIONS_KEY] = Sessions(worker, config)
    app[ASR_CONNECTIONS_KEY] = set()
    app[FILES_KEY] = FileJobs(worker, config)
    app.router.add_get("/", page)
    app.router.add_static("/static/", STATIC)
    app.router.add_get("/health", health)
    app.router.add_get("/status", status)
    app.router.add_get("/asr", asr_socket)
    app.router.add_post("/transcribe", transcribe_upload)
    app.router.add_post("/v1/audio/transcriptions", openai_transcriptions)
    app.router.add_post("/v1/audio/translations", openai_translations)
    app.router.add_get("/v1/models", _models)
    add_webrtc_routes(app)

    async def shutdown(app: web.Application) -> None:
        await app[SESSIONS_KEY].close_all()
        for ws in list(app[ASR_CONNECTIONS_KEY]):
            await ws.close(code=1001, message=b"server shutting down")
    app.on_shutdown.append(shutdown)
    return app


async def _models(request: web.Request) -> web.Response:
    name = request.app[WORKER_KEY].engine.model_name
    return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "roomscribe"}]})


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    return context


def run(config: ServerConfig, worker: EngineWorker) -> None:
    app = build_app(config, worker)
    scheme = "https" if config.certfile else "http"
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    print(f"roomscribe: serving on {scheme}://{shown}:{config.port}/ (model {worker.engine.model_name}; "
          f"auth {'on' if config.api_key else 'off'})", flush=True)
    web.run_app(app, host=config.host, port=config.port, ssl_context=ssl_context(config), print=None,
                access_log=None)


def parse_control(text) -> dict:
    """A client's JSON control message: an object with a string `type` (ValueError if not)."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ValueError("a control message is a JSON object with a 'type'")
    return data


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
