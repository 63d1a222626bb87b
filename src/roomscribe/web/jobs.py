"""Background transcription jobs: a URL or a local file (below `--media-root`) fetched safely
(`fetch`), transcribed on the shared model, and stored as a meeting.

`POST /jobs` (JSON: `url`, and optionally `meeting_id`, `user_id`, `language`, `diarize`,
`num_speakers`, `translate_to`, `prompt`) answers 202 with the job at once; `GET /jobs/{id}`
tells its state (`queued`, `running`, `done`, `failed`), its progress (0 to 1) and, once
done, its meeting. A job goes on when its client leaves; a server that stops mid-job marks
the job failed when it starts again (jobs are kept in the store, by server).
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from ..session.records import MeetingRecords
from ..store import Job, StoreError
from .fetch import FetchFailedError, FetchPolicy, FetchRefusedError, fetch_media
from .files import FileOptions, Keeping, decode, transcribe
from .records import meeting_id_field, records, stored
from .responses import RequestError, dumps, json_error
from .tenants import tenant_of

logger = logging.getLogger("roomscribe.web")

PROGRESS_EVERY = 1.0  # seconds between progress writes to the store
FETCH_SHARE = 0.1  # of a job's progress: fetching; the rest is transcribing


@dataclass(frozen=True)
class JobRequest:
    """What a job transcribes and how, checked before it is accepted."""

    source: str  # a URL, file:// URL or path below the media root
    options: FileOptions
    meeting_id: str | None = None
    user_id: str | None = None

    def params(self) -> dict:
        return {"source": self.source, "meeting_id": self.meeting_id, "user_id": self.user_id, **self.options.params()}


class Jobs:
    """The server's running jobs; their state is kept in the store."""

    def __init__(self, app: web.Application, kept: MeetingRecords, policy: FetchPolicy, owner: str):
        self.app = app
        self.records = kept
        self.policy = policy
        self.owner = owner
        self._tasks: dict[str, asyncio.Task] = {}

    async def start(self) -> None:
        """Jobs this server was running when it stopped are failed, not left running forever."""
        try:
            failed = await asyncio.to_thread(
                self.records.store.fail_interrupted_jobs, self.owner, "the server restarted while the job ran"
            )
        except StoreError as exc:
            logger.warning("could not mark interrupted jobs failed: %s", exc)
            return
        if failed:
            logger.warning("%d jobs were interrupted by a restart and are marked failed", failed)

    async def submit(self, tenant: str, kind: str, request: JobRequest) -> Job:
        store = self.records.store
        job = await stored(
            store.create_job, tenant, kind, meeting_id=request.meeting_id, params=request.params(), owner=self.owner
        )
        task = asyncio.get_running_loop().create_task(self._run(job, request))
        self._tasks[job.id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job.id, None))
        return job

    async def wait(self, job_id: str) -> None:
        task = self._tasks.get(job_id)
        if task is not None:
            await asyncio.shield(task)

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    def status(self) -> dict:
        return {"running": len(self._tasks)}

    async def _run(self, job: Job, request: JobRequest) -> None:
        store = self.records.store
        last = [0.0]
        writing: list[asyncio.Future] = []  # the progress write in flight, awaited before the end

        def progress(share: float) -> None:  # on the loop
            now = time.monotonic()
            if now - last[0] >= PROGRESS_EVERY:
                last[0] = now
                # Not awaited: a slow store delays the progress shown, never the job.
                writing[:] = [
                    asyncio.get_running_loop().run_in_executor(
                        None, lambda: store.update_job(job.id, progress=round(min(share, 0.99), 3))
                    )
                ]

        try:
            await asyncio.to_thread(store.update_job, job.id, status="running")
            data, name = await fetch_media(
                request.source,
                self.policy,
                on_progress=lambda done, total: progress(FETCH_SHARE * done / total) if total else None,
            )
            audio = await decode(self.app, data, name)
            loop = asyncio.get_running_loop()

            def transcribed(done: float, total: float) -> None:  # the model's thread
                if total:
                    loop.call_soon_threadsafe(progress, FETCH_SHARE + (1 - FETCH_SHARE) * done / total)

            result = await transcribe(self.app, audio, request.options, transcribed)
            kept = (data, mimetypes.guess_type(name)[0] or "application/octet-stream")
            del data, audio
            await asyncio.gather(*writing, return_exceptions=True)
            meeting = await self.records.save_file(
                job.tenant,
                request.meeting_id,
                Keeping.stored_captions(result, request.user_id),
                source="url" if "://" in request.source and not request.source.startswith("file:") else "file",
                title=os.path.basename(name) or name,
                user_id=request.user_id,
                language=result.result.language,
                audio=kept,
            )
            await asyncio.to_thread(
                store.update_job,
                job.id,
                status="done",
                progress=1.0,
                result={
                    "meeting_id": meeting.id,
                    "duration": round(result.result.duration, 3),
                    "language": result.result.language,
                    "processing_time": round(result.result.processing_time, 3),
                    "segments": len(result.captions),
                },
            )
        except asyncio.CancelledError:
            await self._fail(job, "the server stopped", 503)
            raise
        except (FetchRefusedError, FetchFailedError, RequestError) as exc:
            await self._fail(job, str(exc), exc.status)
        except StoreError as exc:
            await self._fail(job, str(exc), 503)
        except Exception as exc:  # noqa: BLE001 - a job fails alone, with its reason
            logger.exception("job %s failed", job.id)
            await self._fail(job, f"internal error: {exc}", 500)

    async def _fail(self, job: Job, reason: str, status: int) -> None:
        """The job failed: its reason, and the HTTP status it is answered with where a client
        waits for it (`result.http_status`: a refused URL is the client's 4xx, not ours)."""
        try:
            await asyncio.to_thread(
                self.records.store.update_job, job.id, status="failed", error=reason, result={"http_status": status}
            )
        except StoreError as exc:
            logger.error("job %s failed (%s) and the store could not be told: %s", job.id, reason, exc)


JOBS_KEY = web.AppKey("jobs", Jobs)


def add_routes(app: web.Application, config) -> None:
    """`/jobs` where the server keeps records (its jobs live in the store)."""
    kept = records(app)
    if kept is None:
        return
    policy = FetchPolicy(
        allow=FetchPolicy.parse_allow(config.allow_fetch),
        media_root=config.media_root,
        max_bytes=int(config.max_upload_mb * 1024**2),
    )
    jobs = app[JOBS_KEY] = Jobs(app, kept, policy, owner=f"{socket.gethostname()}:{config.port}")

    async def start(app: web.Application) -> None:
        await jobs.start()

    async def stop(app: web.Application) -> None:
        await jobs.close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.router.add_post("/jobs", create_job)
    app.router.add_get("/jobs/{job}", get_job)


def job_request(app: web.Application, fields: Mapping[str, object]) -> JobRequest:
    """A job's request from a client's JSON; a `RequestError` when it is wrong."""
    source = fields.get("url") or fields.get("audio_url") or fields.get("path")
    if not isinstance(source, str) or not source.strip():
        raise RequestError(400, "give the media to transcribe as `url` (http, https, or a file below --media-root)")
    text_fields = {
        k: ("true" if v is True else str(v))
        for k, v in fields.items()
        if v is not None and not isinstance(v, (dict, list))
    }
    if isinstance(fields.get("translate_to"), list):
        text_fields["translate_to"] = ",".join(map(str, fields["translate_to"]))
    return JobRequest(
        source=source.strip(),
        options=FileOptions.from_fields(app, text_fields),
        meeting_id=meeting_id_field(text_fields.get("meeting_id")),
        user_id=text_fields.get("user_id") or None,
    )


async def read_json(request: web.Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise RequestError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the body is a JSON object")
    return body


async def create_job(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
        tenant = tenant_of(request, body.get("tenant_id"))
        wanted = job_request(request.app, body)
        job = await request.app[JOBS_KEY].submit(tenant, "transcribe", wanted)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    return web.json_response(job.as_dict(), status=202, dumps=dumps, headers={"Location": f"/jobs/{job.id}"})


async def get_job(request: web.Request) -> web.Response:
    tenant = tenant_of(request)
    job = await stored(request.app[JOBS_KEY].records.store.get_job, tenant, request.match_info["job"])
    if job is None:
        return json_error(404, f"no job {request.match_info['job']!r}")
    return web.json_response(job.as_dict(), dumps=dumps)
