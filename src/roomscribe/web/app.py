"""`roomscribe serve`: one HTTP server, every door onto one shared scheduler.

- `/` the caption page (WebRTC microphone → captions on a data channel), `/whip` its
  offer/answer, `/sessions/{id}/transcript` its downloads;
- `/asr` the WhisperLiveKit-compatible WebSocket;
- `/transcribe` and `/v1/audio/transcriptions` (OpenAI-compatible) for files;
- `/health` and `/status`.

The doors live in their own modules (`webrtc`, `asr_socket`, `files`) and share the app's
state through the typed keys of `keys`; this module assembles them and guards every route.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from pathlib import Path

from aiohttp import web

from ..session.file_jobs import FileJobs
from ..session.records import MeetingRecords
from ..session.scheduler import EngineWorker
from ..store import Store, open_store
from .asr_socket import asr_socket
from .config import ServerConfig
from .files import openai_transcriptions, openai_translations, transcribe_upload, translation_status
from .jobs import add_routes as add_job_routes
from .keys import ASR_CONNECTIONS_KEY, CONFIG_KEY, FILES_KEY, SESSIONS_KEY, STARTED_KEY, WORKER_KEY
from .meetings import add_routes as add_meeting_routes
from .records import RECORDS_KEY, records
from .responses import RequestError, json_error
from .sessions import Sessions
from .stt_compat import add_routes as add_stt_routes
from .tenants import CALLER, identify
from .webrtc import add_routes as add_webrtc_routes

logger = logging.getLogger("roomscribe.web")

STATIC = Path(__file__).parent / "static"
PUBLIC_PATHS = ("/", "/health", "/favicon.ico")  # the page itself holds no data


@web.middleware
async def _guard(request: web.Request, handler):
    """Auth for every data route (who the request acts for: `tenants`), and a clear JSON
    error for anything that goes wrong."""
    if request.path not in PUBLIC_PATHS and not request.path.startswith("/static/"):
        found = await identify(request, request.app[CONFIG_KEY].api_key, _store_of(request.app))
        if found is None:
            return json_error(401, "missing or wrong API key (send 'Authorization: Bearer KEY' or ?key=KEY)")
        request[CALLER] = found
    try:
        return await handler(request)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason if not exc.text or exc.text.startswith(str(exc.status)) else exc.text)
    except (asyncio.CancelledError, ConnectionResetError):
        raise  # the client went away: nothing to answer, nothing wrong with the server
    except Exception:  # noqa: BLE001 - one broken request must not take the server down
        logger.exception("%s %s failed", request.method, request.path)
        return json_error(500, "internal error (logged on the server)")


def _store_of(app: web.Application) -> Store | None:
    kept = records(app)
    return kept.store if kept is not None else None


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def status(request: web.Request) -> web.Response:
    app = request.app
    worker: EngineWorker = app[WORKER_KEY]
    return web.json_response(
        {
            "uptime": round(time.monotonic() - app[STARTED_KEY], 1),
            "models": [worker.engine.model_name],
            "scheduler": worker.status(),
            "sessions": app[SESSIONS_KEY].status(),
            "asr_connections": len(app[ASR_CONNECTIONS_KEY]),
            "files": app[FILES_KEY].status(),
            "translation": translation_status(app),
            "records": records(app).status() if records(app) is not None else None,
        }
    )


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def build_app(config: ServerConfig, worker: EngineWorker, store: Store | None = None) -> web.Application:
    """The server's app; meeting records go to `store`, else to the one `config` names
    (SQLite in its data directory, or its PostgreSQL), unless `config.records` is off."""
    # Uploads are read in pieces with their own limit (files.py); this only bounds other bodies.
    app = web.Application(middlewares=[_guard], client_max_size=1024**2)
    app[CONFIG_KEY] = config
    app[WORKER_KEY] = worker
    app[STARTED_KEY] = time.monotonic()
    app[SESSIONS_KEY] = Sessions(config.max_sessions)
    app[ASR_CONNECTIONS_KEY] = set()
    app[FILES_KEY] = FileJobs(worker.engine, config.max_file_jobs, config.max_queued_files)
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
    add_meeting_routes(app)
    add_stt_routes(app)
    if config.records:
        _keep_records(app, config, store)
        add_job_routes(app, config)

    async def shutdown(app: web.Application) -> None:
        await app[SESSIONS_KEY].close_all()
        for ws in list(app[ASR_CONNECTIONS_KEY]):
            await ws.close(code=1001, message=b"server shutting down")

    app.on_shutdown.append(shutdown)
    return app


def _keep_records(app: web.Application, config: ServerConfig, store: Store | None) -> None:
    owned = store is None
    store = store or open_store(config.database, config.data_dir)
    kept = app[RECORDS_KEY] = MeetingRecords(store, keep_audio=config.keep_audio, retention_days=config.retention_days)

    async def start(app: web.Application) -> None:
        if config.retention_days is not None:
            app[RETENTION_KEY] = asyncio.get_running_loop().create_task(kept.expire())

    async def stop(app: web.Application) -> None:
        task = app.get(RETENTION_KEY)
        if task is not None:
            task.cancel()
        await asyncio.to_thread(kept.close)
        if owned:
            store.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)


RETENTION_KEY = web.AppKey("retention", asyncio.Task)


async def _models(request: web.Request) -> web.Response:
    name = request.app[WORKER_KEY].engine.model_name
    return web.json_response({"object": "list", "data": [{"id": name, "object": "model", "owned_by": "roomscribe"}]})


def _records_line(app: web.Application) -> str:
    kept = records(app)
    return "off" if kept is None else f"{kept.store.kind} {kept.store.url}"


def ssl_context(config: ServerConfig) -> ssl.SSLContext | None:
    if not config.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.certfile, config.keyfile)
    return context


def run(config: ServerConfig, worker: EngineWorker, store: Store | None = None) -> None:
    app = build_app(config, worker, store)
    scheme = "https" if config.certfile else "http"
    shown = "127.0.0.1" if config.host in ("0.0.0.0", "::") else config.host
    print(
        f"roomscribe: serving on {scheme}://{shown}:{config.port}/ (model {worker.engine.model_name}; "
        f"auth {'on' if config.api_key or (store is not None and store.has_keys()) else 'off'}; "
        f"records {_records_line(app)})",
        flush=True,
    )
    web.run_app(app, host=config.host, port=config.port, ssl_context=ssl_context(config), print=None, access_log=None)
