"""The caption agent as a LiveKit Agents worker.

    roomscribe start                 # production: register with LIVEKIT_URL, wait for dispatches
    roomscribe dev                   # the same, with debug logs and no load limit
    roomscribe connect --room NAME   # join one room directly, no dispatch

Dispatch is explicit (`agent_name`, default "roomscribe"): captions are switched on per
room through the dispatch API or a token's room configuration, with the caption
options as job metadata (see `options.py`). All rooms of a worker run in its process
on threads and share one model and its scheduler (`session.shared_engine`/`worker_for`),
loaded once in the prewarm hook: every track is a `session.LiveSpeaker` on it. The
worker's load (see `capacity.py`) lets LiveKit spread rooms over several workers.

Each room session is kept as a meeting (`session.records`; ROOMSCRIBE_DATABASE for a
PostgreSQL that several workers share, else SQLite in ROOMSCRIBE_DATA_DIR), named by the
room's sid, in the tenant of the job metadata's `tenant` (default ROOMSCRIBE_TENANT or
"local"): workers that caption the same room session write the same meeting.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType, JobProcess, JobRequest

from livekit import rtc

from ..diarization.extras import NEEDS, missing_packages
from ..engine import StreamConfig
from ..session import EngineWorker, LiveSpeaker, OptionsError, Pipeline, shared_engine, worker_for
from ..session.records import MeetingRecorder, MeetingRecords, records_from_env
from ..store import StoreError, is_meeting_id
from ..translation import shared_translation, translation_unavailable
from .capacity import PROCESS_CAPACITY
from .livekit_room import (
    ATTRIBUTE_CAPTIONS,
    LiveKitCaptionSender,
    announce_paused,
    announce_translation,
    bind_room,
)
from .options import CaptionOptions
from .room import RoomCaptioner, SpeakerFactory

logger = logging.getLogger("roomscribe.agent")

DEFAULT_AGENT_NAME = "roomscribe"
COMMANDS = ("start", "dev", "connect", "download-files")
EMPTY_ROOM_SECONDS = float(os.environ.get("ROOMSCRIBE_EMPTY_TIMEOUT", "20"))


def model_name() -> str:
    return os.environ.get("ROOMSCRIBE_MODEL", "base")


def prewarm(proc: JobProcess) -> None:
    """Load the model once per process, and measure what it can serve."""
    engine = shared_engine(model_name())
    PROCESS_CAPACITY.calibrate(engine)
    PROCESS_CAPACITY.watch(worker_for(engine))
    proc.userdata["engine"] = engine


def load(server: AgentServer) -> float:
    return PROCESS_CAPACITY.load()


async def on_request(request: JobRequest) -> None:
    await request.accept(name="Captions", identity=f"roomscribe-{request.id}", attributes={ATTRIBUTE_CAPTIONS: "on"})


def room_options(metadata: str | None) -> CaptionOptions:
    defaults = CaptionOptions.from_env()
    try:
        return defaults.with_metadata(metadata)
    except OptionsError as exc:
        logger.error("ignoring the job's caption options: %s", exc)
        return defaults


def live_speakers(worker: EngineWorker, options: CaptionOptions) -> SpeakerFactory:
    """How a room's tracks get their speakers: each a `LiveSpeaker` on the shared scheduler."""

    def speaker(
        *, name: str, track: str, language: str | None, pipeline: Pipeline, prompt: str = "", diarize: bool = False
    ) -> LiveSpeaker:
        backend = worker.engine.diarizer_choice.name
        if diarize and missing_packages(backend):
            logger.error(
                "%s has several voices, but speaker diarization (%s) needs pip install '%s': captioned as one speaker",
                name,
                backend,
                NEEDS[backend][1],
            )
            diarize = False
        config = StreamConfig(policy=options.policy, language=language, prompt=prompt, diarize=diarize)
        return LiveSpeaker(worker, config, name=name, track=track, pipeline=pipeline)

    return speaker


_rooms: dict[int, RoomCaptioner] = {}  # by id(JobContext): closed in on_session_end


_records: list[MeetingRecords | None] = []  # the process's meeting records, opened on first use


def shared_records() -> MeetingRecords | None:
    """The worker's meeting records (`records_from_env`: ROOMSCRIBE_DATABASE, or SQLite in
    ROOMSCRIBE_DATA_DIR); None when off, or when the store cannot be opened (logged: the
    rooms are captioned all the same)."""
    if not _records:
        try:
            _records.append(records_from_env())
        except StoreError as exc:
            logger.error("meeting records are off in this worker: %s", exc)
            _records.append(None)
    return _records[0]


async def open_room_record(ctx: JobContext, options: CaptionOptions) -> MeetingRecorder | None:
    """The room session's meeting (its sid: every worker that captions it writes the same one)."""
    kept = shared_records() if options.record else None
    if kept is None:
        return None
    room = ctx.job.room
    meeting_id = room.sid if room.sid and is_meeting_id(room.sid) else None
    return await kept.open_live(options.tenant, meeting_id, source="livekit", title=room.name or None)


async def entrypoint(ctx: JobContext) -> None:
    options = room_options(ctx.job.metadata)
    engine = ctx.proc.userdata.get("engine") or await asyncio.to_thread(shared_engine, model_name())
    recorder = await open_room_record(ctx, options)
    captioner = RoomCaptioner(
        options,
        live_speakers(worker_for(engine), options),
        LiveKitCaptionSender(ctx.room, legacy=legacy_mode()),
        on_paused=announce_paused(ctx.room),
        capacity=PROCESS_CAPACITY,
        translation=shared_translation(),
        translation_unavailable=translation_unavailable(),
        on_translation=announce_translation(ctx.room),
        recorder=recorder,
    )
    _rooms[id(ctx)] = captioner
    bind_room(ctx.room, captioner)
    leave_when_empty(ctx)
    logger.info("captioning room %s (options %s)", ctx.job.room.name, options)
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    captioner.start_translation()


async def on_session_end(ctx: JobContext) -> None:
    """Before the room is left: every track's last final goes out."""
    captioner = _rooms.pop(id(ctx), None)
    if captioner is not None:
        await captioner.aclose()
        kept = shared_records()
        if captioner.recorder is not None and kept is not None:
            await kept.end_live(captioner.recorder)


def leave_when_empty(ctx: JobContext) -> None:
    """Leave once no one but agents has been in the room for a while."""
    timer: list[asyncio.TimerHandle] = []

    def people() -> int:
        return sum(
            1 for p in ctx.room.remote_participants.values() if p.kind != rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        )

    def check(*_: object) -> None:
        if people() == 0 and not timer:
            timer.append(asyncio.get_running_loop().call_later(EMPTY_ROOM_SECONDS, leave))
        elif people() > 0 and timer:
            timer.pop().cancel()

    def leave() -> None:
        timer.clear()
        if people() == 0:
            logger.info("room %s is empty: leaving", ctx.job.room.name)
            ctx.shutdown("room empty")

    ctx.room.on("participant_connected", check)
    ctx.room.on("participant_disconnected", check)
    ctx.room.on("connection_state_changed", check)


def legacy_mode() -> str:
    mode = os.environ.get("ROOMSCRIBE_LEGACY_TRANSCRIPTION", "auto")
    return mode if mode in ("auto", "always", "never") else "auto"


def build_server(agent_name: str | None = None, **server_options) -> AgentServer:
    server_options.setdefault("job_executor_type", JobExecutorType.THREAD)  # rooms share one model
    server_options.setdefault("num_idle_processes", 1)
    server_options.setdefault("initialize_process_timeout", 120.0)  # model load and calibration
    if os.environ.get("ROOMSCRIBE_HEALTH_PORT"):
        server_options.setdefault("port", int(os.environ["ROOMSCRIBE_HEALTH_PORT"]))
    server_options.setdefault("load_threshold", float(os.environ.get("ROOMSCRIBE_LOAD_THRESHOLD", "0.9")))
    if os.environ.get("ROOMSCRIBE_PROMETHEUS_PORT"):
        from .metrics import register

        register()
        server_options.setdefault("prometheus_port", int(os.environ["ROOMSCRIBE_PROMETHEUS_PORT"]))
    server = AgentServer(setup_fnc=prewarm, load_fnc=load, **server_options)
    name = agent_name or os.environ.get("ROOMSCRIBE_AGENT_NAME", DEFAULT_AGENT_NAME)
    server.rtc_session(entrypoint, agent_name=name, on_request=on_request, on_session_end=on_session_end)
    return server


def run(argv: list[str]) -> None:
    """`roomscribe start|dev|connect ...`: the LiveKit Agents command line for the caption agent."""
    from livekit.agents import cli

    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"livekit\.agents")
    sys.argv = ["roomscribe", *argv]
    cli.run_app(build_server())
