"""The server's shared state, as typed keys of the aiohttp application."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from ..session.file_jobs import FileJobs
from ..session.scheduler import EngineWorker
from ..translation import TranslationService, shared_translation, translation_unavailable
from .config import ServerConfig
from .sessions import Participant, Sessions


@dataclass(frozen=True)
class Translation:
    """The translation the doors use: the service, or why there is none."""

    service: TranslationService | None
    unavailable: str | None = None  # why `service` is None


CONFIG_KEY = web.AppKey("config", ServerConfig)
WORKER_KEY = web.AppKey("worker", EngineWorker)
STARTED_KEY = web.AppKey("started", float)
SESSIONS_KEY = web.AppKey("sessions", Sessions)
FILES_KEY = web.AppKey("files", FileJobs)
ASR_CONNECTIONS_KEY = web.AppKey("asr_connections", set[web.WebSocketResponse])
PEERS_KEY = web.AppKey("peers", dict[str, Participant])  # page participants by id
TRANSLATION_KEY = web.AppKey("translation", Translation)  # optional: a service given to build_app's app


def live_streams(app: web.Application) -> int:
    """Speakers streaming now, on the page and /asr together."""
    return app[SESSIONS_KEY].speakers() + len(app[ASR_CONNECTIONS_KEY])


def translation(app: web.Application) -> Translation:
    """The app's translation: the one it was given (`TRANSLATION_KEY`), else the process's
    one `shared_translation()` (made on first use; None, with the reason, where it cannot run)."""
    given = app.get(TRANSLATION_KEY)
    if given is not None:
        return given
    service = shared_translation()
    return Translation(service, None if service is not None else translation_unavailable())
