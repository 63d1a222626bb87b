"""The ``/agent`` worker protocol and explicit agent dispatch.

Workers (``livekit.agents.AgentServer``) keep a WebSocket to ``/agent`` and exchange
binary protobuf ``WorkerMessage``/``ServerMessage``. A dispatch picks an AVAILABLE worker
registered with the agent name, at random weighted by ``1 - load`` (as livekit-server's
``selectWorkerWeightedByLoad``), sends ``AvailabilityRequest{job}``; a worker that says
no (or does not answer) is excluded and the next one is tried. On ``available=True`` it
sends ``JobAssignment{job, url, token}``; the job process joins ``/rtc`` with that token.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from livekit.protocol import agent

from livekit import api

from .signal import server_info
from .util import Record, new_id, now_ms

if TYPE_CHECKING:
    from .server import Emulator

logger = logging.getLogger("tests.emulator.agent")


@dataclass
class WorkerRecord(Record):
    id: str
    agent_name: str
    version: str
    type: int
    status: int = agent.WorkerStatus.WS_AVAILABLE
    load: float = 0.0
    job_count: int = 0
    jobs: dict[str, int] = field(default_factory=dict)  # job id -> last JobStatus from update_job
    updates: list[tuple[float, int, float]] = field(default_factory=list)  # (monotonic, status, load)
    connected: bool = True
    registered_at: float = field(default_factory=time.monotonic)
    _ws: web.WebSocketResponse | None = field(default=None, repr=False)
    _availability: dict[str, asyncio.Future] = field(default_factory=dict, repr=False)

    @property
    def available(self) -> bool:
        return self.connected and self.status == agent.WorkerStatus.WS_AVAILABLE


@dataclass
class DispatchRecord(Record):
    id: str
    room: str
    agent_name: str
    metadata: str
    job_id: str
    state: str = "pending"  # pending -> assigned | failed
    worker_id: str | None = None
    participant_identity: str | None = None
    token: str | None = None
    attempts: list[tuple[str, str]] = field(default_factory=list)  # (worker id, "accepted"/"rejected"/"timeout")
    job_status: int | None = None  # last update_job status
    job_error: str = ""
    error: str = ""
    created_at: float = field(default_factory=time.monotonic)
    assigned_at: float | None = None
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    async def wait(self, timeout: float = 20.0) -> DispatchRecord:
        """Wait until assigned or failed; return self."""
        await asyncio.wait_for(self._done.wait(), timeout)
        return self


class AgentDispatcher:
    def __init__(self, emu: Emulator, *, dispatch_timeout: float = 15.0, availability_timeout: float = 5.0) -> None:
        self.emu = emu
        self.workers: dict[str, WorkerRecord] = {}
        self.dispatches: list[DispatchRecord] = []
        self.dispatch_timeout = dispatch_timeout
        self.availability_timeout = availability_timeout
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._sockets: set[web.WebSocketResponse] = set()

    # -- /agent ----------------------------------------------------------------------------
    async def handle_ws(self, request: web.Request) -> web.StreamResponse:
        claims = self.emu._auth(request)
        if claims is None or claims.video is None or not claims.video.agent:
            return web.Response(status=401, text="agent grant required")
        ws = web.WebSocketResponse(max_msg_size=16 << 20, timeout=2.0)
        await ws.prepare(request)
        self._sockets.add(ws)
        worker: WorkerRecord | None = None
        try:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                wm = agent.WorkerMessage()
                wm.ParseFromString(msg.data)
                which = wm.WhichOneof("message")
                if which == "register":
                    if worker is None:
                        r = wm.register
                        worker = WorkerRecord(
                            id=new_id("AW_"), agent_name=r.agent_name, version=r.version, type=r.type, _ws=ws
                        )
                        self.workers[worker.id] = worker
                    await self._send(
                        worker,
                        agent.ServerMessage(
                            register=agent.RegisterWorkerResponse(worker_id=worker.id, server_info=server_info())
                        ),
                    )
                    self._notify()
                elif worker is None:
                    logger.warning("worker message %s before register", which)
                elif which == "availability":
                    fut = worker._availability.get(wm.availability.job_id)
                    if fut is not None and not fut.done():
                        fut.set_result(wm.availability)
                elif which == "update_worker":
                    u = wm.update_worker
                    if u.HasField("status"):
                        worker.status = u.status
                    worker.load = u.load
                    worker.job_count = u.job_count
                    worker.updates.append((time.monotonic(), worker.status, worker.load))
                    self._notify()
                elif which == "update_job":
                    u = wm.update_job
                    worker.jobs[u.job_id] = u.status
                    for d in self.dispatches:
                        if d.job_id == u.job_id:
                            d.job_status, d.job_error = u.status, u.error
                elif which == "ping":
                    await self._send(
                        worker,
                        agent.ServerMessage(
                            pong=agent.WorkerPong(last_timestamp=wm.ping.timestamp, timestamp=now_ms())
                        ),
                    )
        finally:
            self._sockets.discard(ws)
            if worker is not None:
                worker.connected = False
                worker._ws = None
                for fut in worker._availability.values():
                    if not fut.done():
                        fut.cancel()
                self._notify()
        return ws

    async def _send(self, worker: WorkerRecord, msg: agent.ServerMessage) -> None:
        ws = worker._ws
        if ws is None or ws.closed:
            raise ConnectionError(f"worker {worker.id} is gone")
        await ws.send_bytes(msg.SerializeToString())

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- dispatch --------------------------------------------------------------------------
    def create(self, room_name: str, agent_name: str, metadata: str = "") -> DispatchRecord:
        rec = DispatchRecord(
            id=new_id("AD_"), room=room_name, agent_name=agent_name, metadata=metadata, job_id=new_id("AJ_")
        )
        self.dispatches.append(rec)
        task = asyncio.get_running_loop().create_task(self._run(rec))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return rec

    def _pick(self, agent_name: str, excluded: set[str]) -> WorkerRecord | None:
        cands = [
            w for w in self.workers.values() if w.available and w.agent_name == agent_name and w.id not in excluded
        ]
        if not cands:
            return None
        weights = [max(0.0, 1.0 - w.load) for w in cands]
        if sum(weights) <= 0:
            return random.choice(cands)
        return random.choices(cands, weights=weights)[0]

    def _job(self, rec: DispatchRecord) -> agent.Job:
        room = self.emu.ensure_room(rec.room)
        return agent.Job(
            id=rec.job_id,
            dispatch_id=rec.id,
            type=agent.JobType.JT_ROOM,
            room=room.info(),
            agent_name=rec.agent_name,
            metadata=rec.metadata,
            state=agent.JobState(status=agent.JobStatus.JS_PENDING, updated_at=now_ms()),
        )

    async def _run(self, rec: DispatchRecord) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.dispatch_timeout
        excluded: set[str] = set()
        try:
            while True:
                worker = self._pick(rec.agent_name, excluded)
                if worker is None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        rec.state, rec.error = "failed", f"no available worker for agent {rec.agent_name!r}"
                        logger.warning("dispatch %s: %s", rec.id, rec.error)
                        return
                    try:
                        await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
                    except TimeoutError:
                        pass
                    continue
                answer = await self._ask(worker, rec)
                if answer is None or not answer.available:
                    excluded.add(worker.id)
                    rec.attempts.append((worker.id, "timeout" if answer is None else "rejected"))
                    continue
                rec.attempts.append((worker.id, "accepted"))
                await self._assign(worker, rec, answer)
                return
        finally:
            rec._done.set()

    async def _ask(self, worker: WorkerRecord, rec: DispatchRecord) -> agent.AvailabilityResponse | None:
        fut = asyncio.get_running_loop().create_future()
        worker._availability[rec.job_id] = fut
        try:
            await self._send(worker, agent.ServerMessage(availability=agent.AvailabilityRequest(job=self._job(rec))))
            return await asyncio.wait_for(fut, self.availability_timeout)
        except (TimeoutError, ConnectionError):
            return None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if fut.cancelled() and task is not None and not task.cancelling():
                return None  # the worker disconnected
            raise
        finally:
            worker._availability.pop(rec.job_id, None)

    async def _assign(self, worker: WorkerRecord, rec: DispatchRecord, ans: agent.AvailabilityResponse) -> None:
        identity = ans.participant_identity or f"agent-{rec.job_id}"
        token = (
            api.AccessToken(self.emu.api_key, self.emu.api_secret)
            .with_identity(identity)
            .with_kind("agent")
            .with_name(ans.participant_name or identity)
            .with_metadata(ans.participant_metadata)
            .with_attributes(dict(ans.participant_attributes))
            .with_grants(
                api.VideoGrants(
                    room_join=True,
                    room=rec.room,
                    agent=True,
                    can_publish=True,
                    can_subscribe=True,
                    can_publish_data=True,
                    can_update_own_metadata=True,
                )
            )
            .to_jwt()
        )
        job = self._job(rec)
        job.state.participant_identity = identity
        job.state.worker_id = worker.id
        try:
            await self._send(
                worker, agent.ServerMessage(assignment=agent.JobAssignment(job=job, url=self.emu.url, token=token))
            )
        except ConnectionError as e:
            rec.state, rec.error = "failed", str(e)
            return
        rec.state, rec.worker_id, rec.participant_identity, rec.token = "assigned", worker.id, identity, token
        rec.assigned_at = time.monotonic()
        worker.jobs.setdefault(rec.job_id, agent.JobStatus.JS_PENDING)

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for ws in list(self._sockets):
            await ws.close()
