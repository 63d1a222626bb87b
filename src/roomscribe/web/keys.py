"""The server's shared state, as typed keys of the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from ..session.file_jobs import FileJobs
from ..session.scheduler import EngineWorker
from .config import ServerConfig
from .sessions import Participant, Sessions

CONFIG_KEY = web.AppKey("config", ServerConfig)
WORKER_KEY = web.AppKey("worker", EngineWorker)
STARTED_KEY = web.AppKey("started", float)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
FILES_KEY = web.AppKey("files", FileJobs)
ASR_CONNECTIONS_KEY = web.AppKey("asr_connections", set[web.WebSocketResponse])
PEERS_KEY = web.AppKey("peers", dict[str, Participant])  # page participants by id


def live_streams(app: web.Application) -> int:
    """Speakers streaming now, on the page and /asr together."""
    return app[SESSIONS_KEY].speakers() + len(app[ASR_CONNECTIONS_KEY])
