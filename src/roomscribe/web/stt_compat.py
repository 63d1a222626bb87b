"""Routes for clients of WhisperX-style meeting services, on the same pipeline and store.

- `POST /stt/upload`: multipart `file` with `meeting_id`, `tenant_id`, `user_id`, `language`
  (and `diarize`, `num_speakers`, `translate_to` as on `/transcribe`);
- `POST /stt/process`: JSON `{"audio_url": ..., same ids}`: fetched safely (`fetch`) as a
  background job, waited for unless `"background": true` (then 202 and `GET /jobs/{id}`);
- `WS /stt/realtime` (on a server with records off too: captions only, nothing stored): JSON
  messages `start_session` (`session_id`, `tenant_id`,
  `meeting_id`, `language`, `user_id`, `sample_rate`), `audio_chunk` (`audio`: base64
  PCM s16le mono), `end_session`; results are pushed as `partial_transcript` and
  `transcript` messages (a `transcript` for a segment id already pushed replaces it: a
  second hearing's revision, or with empty `text` its retraction), and the whole meeting as
  `session_ended`;
- `GET /stt/status`.

Answers are shaped as those clients read them: `meeting_id`, `tenant_id`, `transcript`,
`segments` (`start`, `end`, `text`, `speaker`, `confidence`), `speakers` (per speaker
`total_duration`, `segments_count`, `text_parts`), `confidence`, `processing_time`,
`language`, `total_segments`, `total_speakers`, `has_diarization`. Speakers are named as
those services name them (`SPEAKER_00`, ...) where a file was diarized, else by who spoke.
A `tenant_id` that is not the key's tenant is refused (403); every meeting is stored.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time

import aiohttp
from aiohttp import web

from ..audio import FrameConverter
from ..diarization.extras import missing_packages
from ..session import Caption, LiveSpeaker, Pipeline
from ..session.options import OptionsError, parse_flag, parse_language
from ..session.records import segment_from_caption
from ..store import Meeting, Segment, new_meeting_id
from .files import FileOptions, Keeping, decode, query_fields, read_upload, transcribe
from .jobs import JOBS_KEY, job_request, read_json
from .keys import ASR_CONNECTIONS_KEY, CONFIG_KEY, FILES_KEY, WORKER_KEY, live_streams
from .meetings import speaker_label
from .records import meeting_id_field, records, stored
from .responses import RequestError, dumps, json_error
from .tenants import tenant_of

logger = logging.getLogger("roomscribe.web")

MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # one audio_chunk (base64) at most
MAX_SAMPLE_RATE = 192_000


def add_routes(app: web.Application) -> None:
    app.router.add_post("/stt/upload", stt_upload)
    app.router.add_post("/stt/process", stt_process)
    app.router.add_get("/stt/realtime", stt_realtime)
    app.router.add_get("/stt/status", stt_status)


def compat_speaker(segment: Segment) -> str:
    """A segment's speaker as those clients expect it: a diarized voice S3 as SPEAKER_02,
    else who spoke."""
    label = segment.speaker or ""
    if label[:1] == "S" and label[1:].isdigit() and not segment.participant:
        return f"SPEAKER_{int(label[1:]) - 1:02d}"
    return speaker_label(segment)


def compat_document(meeting: Meeting, segments: list[Segment], processing_time: float = 0.0) -> dict:
    rows = [
        {
            "id": i,
            "segment_id": s.segment_id,
            "start": round(s.start, 3),
            "end": round(s.end, 3),
            "text": s.text,
            "speaker": compat_speaker(s),
            "confidence": round(s.confidence, 3) if s.confidence is not None else None,
            **({"translations": dict(s.translations)} if s.translations else {}),
        }
        for i, s in enumerate(segments)
    ]
    speakers: dict[str, dict] = {}
    for row in rows:
        entry = speakers.setdefault(row["speaker"], {"total_duration": 0.0, "segments_count": 0, "text_parts": []})
        entry["total_duration"] = round(entry["total_duration"] + max(0.0, row["end"] - row["start"]), 3)
        entry["segments_count"] += 1
        entry["text_parts"].append(row["text"])
    # Each segment's confidence weighted by how long it is, as a whole-meeting figure.
    scored = [(s.confidence, max(0.0, s.end - s.start)) for s in segments if s.confidence is not None]
    weight = sum(w for _, w in scored)
    languages: dict[str, float] = {}
    for s in segments:
        if s.language:
            languages[s.language] = languages.get(s.language, 0.0) + s.end - s.start
    return {
        "meeting_id": meeting.id,
        "tenant_id": meeting.tenant,
        "user_id": meeting.user_id,
        "transcript": " ".join(s.text for s in segments),
        "segments": rows,
        "speakers": speakers,
        "confidence": round(sum(c * w for c, w in scored) / weight, 3) if weight else None,
        "processing_time": round(processing_time, 3),
        "language": meeting.language or (max(languages, key=languages.__getitem__) if languages else None),
        "duration": round(max((s.end for s in segments), default=0.0), 3),
        "total_segments": len(rows),
        "total_speakers": len(speakers),
        "has_diarization": any(s.speaker is not None for s in segments),
    }


async def _stored(request: web.Request, tenant: str, meeting_id: str, processing_time: float) -> web.Response:
    store = records(request.app).store
    meeting = await stored(store.get_meeting, tenant, meeting_id)
    segments = await stored(store.segments, tenant, meeting_id)
    return web.json_response(compat_document(meeting, segments, processing_time), dumps=dumps)


def _needs_records(request: web.Request) -> None:
    if records(request.app) is None:
        raise RequestError(501, "the /stt routes keep meetings: this server runs with records off")


def _diarize_by_default(app: web.Application, fields: dict[str, str]) -> dict[str, str]:
    """Those services tell voices apart unless asked not to: so do these routes, where the
    diarization extra is installed."""
    if "diarize" not in fields and not missing_packages(app[CONFIG_KEY].diarizer):
        return {**fields, "diarize": "true"}
    return fields


async def stt_upload(request: web.Request) -> web.Response:
    config = request.app[CONFIG_KEY]
    try:
        _needs_records(request)
        data, name, fields = await read_upload(request, int(config.max_upload_mb * 1024**2))
        fields = _diarize_by_default(request.app, {**query_fields(request), **fields})
        options = FileOptions.from_fields(request.app, fields)
        keep = Keeping.of(request, fields, name, data)
        audio = await decode(request.app, data, name)
        del data
        started = time.perf_counter()
        done = await transcribe(request.app, audio, options)
        meeting = await keep.save(done)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    return await _stored(request, keep.tenant, meeting.id, time.perf_counter() - started)


async def stt_process(request: web.Request) -> web.Response:
    try:
        _needs_records(request)
        body = await read_json(request)
        tenant = tenant_of(request, body.get("tenant_id"))
        if not body.get("audio_url"):
            raise RequestError(400, "give the audio as audio_url")
        try:
            background = parse_flag(body.get("background"), "background")  # "false" is no
        except OptionsError as exc:
            raise RequestError(400, str(exc)) from None
        if "diarize" not in body and not missing_packages(request.app[CONFIG_KEY].diarizer):
            body = {**body, "diarize": True}
        wanted = job_request(request.app, {k: v for k, v in body.items() if k != "background"})
        jobs = request.app[JOBS_KEY]
        job = await jobs.submit(tenant, "process", wanted)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    if background:
        return web.json_response(job.as_dict(), status=202, dumps=dumps, headers={"Location": f"/jobs/{job.id}"})
    await jobs.wait(job.id)  # the job goes on if this client leaves
    done = await stored(jobs.records.store.get_job, tenant, job.id)
    if done is None or done.status != "done":
        reason = done.error if done is not None else "the job was lost"
        return json_error(_job_status(done), reason or "the job failed", job_id=job.id)
    return await _stored(request, tenant, done.result["meeting_id"], done.result.get("processing_time", 0.0))


def _job_status(job) -> int:
    """How a failed job is answered: with the status its failure carries (a refused URL is
    the client's 4xx, an unreachable one the remote server's 502), else as ours."""
    status = job.result.get("http_status") if job is not None else None
    return status if isinstance(status, int) and 400 <= status < 600 else 500


async def stt_status(request: web.Request) -> web.Response:
    app = request.app
    jobs = app.get(JOBS_KEY)
    return web.json_response(
        {
            "status": "ok",
            "model": app[WORKER_KEY].engine.model_name,
            "diarization": not missing_packages(app[CONFIG_KEY].diarizer),
            "live_streams": live_streams(app),
            "files": app[FILES_KEY].status(),
            "jobs": jobs.status() if jobs is not None else None,
            "records": records(app) is not None,
        }
    )


# -- realtime --------------------------------------------------------------------------------


class RealtimeSession:
    """One `/stt/realtime` session: a live speaker whose finals are stored in the meeting
    before they are pushed to the client."""

    def __init__(self, ws: web.WebSocketResponse, session_id: str, tenant: str, meeting_id: str, sample_rate: int):
        self.ws = ws
        self.session_id = session_id
        self.tenant = tenant
        self.meeting_id = meeting_id
        self.sample_rate = sample_rate
        self.converter = FrameConverter()
        self.speaker: LiveSpeaker | None = None
        self.recorder = None
        self.offset = 0.0  # where the speaker's clock starts on the meeting's
        self.started = time.perf_counter()
        self.ended = False
        self.finals: dict[str, Segment] = {}  # what session_ended shows on a server that keeps no records
        self.pushed: set[str] = set()  # segment ids the client has a transcript of

    def push(self, message: dict) -> None:
        if not self.ws.closed:
            asyncio.ensure_future(self.ws.send_str(dumps({"session_id": self.session_id, **message})))

    def on_caption(self, caption: Caption) -> None:
        if not caption.final:
            self.push({"type": "partial_transcript", "segment_id": caption.segment_id, "text": caption.shown})
            return
        if not caption.text:
            # A segment a second hearing retracted: a client that has it is told (empty text).
            self.finals.pop(caption.segment_id, None)
            if caption.segment_id not in self.pushed:
                return
            self.pushed.discard(caption.segment_id)
        else:
            self.pushed.add(caption.segment_id)
        if self.recorder is None and caption.text:
            self.finals[caption.segment_id] = segment_from_caption(caption, self.offset)
        probabilities = [w.probability for w in caption.words]
        self.push(
            {
                "type": "transcript",
                "is_final": True,
                "meeting_id": self.meeting_id,
                "segment": {
                    "segment_id": caption.segment_id,
                    # On the meeting's clock, as the meeting keeps it and session_ended shows it.
                    "start": round(caption.start + self.offset, 3),
                    "end": round(caption.end + self.offset, 3),
                    "text": caption.text,
                    "speaker": caption.participant,
                    "confidence": round(sum(probabilities) / len(probabilities), 3) if probabilities else None,
                    "language": caption.language,
                },
            }
        )


def _start_fields(message: dict) -> tuple[str, str | None, str | None, str | None, int]:
    session_id = str(message.get("session_id") or "")[:128] or "session"
    try:
        language = parse_language(message.get("language"))
    except OptionsError as exc:
        raise RequestError(400, str(exc)) from None
    rate = message.get("sample_rate", 16000)
    if not isinstance(rate, int) or not 8000 <= rate <= MAX_SAMPLE_RATE:
        raise RequestError(400, f"sample_rate is a whole number of Hz from 8000 to {MAX_SAMPLE_RATE}")
    user_id = message.get("user_id")
    return session_id, language, meeting_id_field(message.get("meeting_id")), str(user_id) if user_id else None, rate


async def stt_realtime(request: web.Request) -> web.StreamResponse:
    app = request.app
    if live_streams(app) >= app[CONFIG_KEY].max_live_streams:
        return json_error(503, "the server is at its limit of live streams; try again later")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return json_error(426, "/stt/realtime is a WebSocket endpoint")
    await ws.prepare(request)
    app[ASR_CONNECTIONS_KEY].add(ws)
    session: RealtimeSession | None = None

    async def error(message: str) -> None:
        await ws.send_str(dumps({"type": "error", "message": message}))

    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await error("send JSON messages (audio as base64 in audio_chunk)")
                continue
            try:
                message = json.loads(msg.data)
                if not isinstance(message, dict):
                    raise ValueError
            except ValueError:
                await error("a message is a JSON object with a type")
                continue
            kind = message.get("type")
            try:
                if kind == "start_session":
                    if session is not None:
                        raise RequestError(400, "the session has started already")
                    session = await _start(request, ws, message)
                elif kind == "audio_chunk":
                    if session is None:
                        raise RequestError(400, "start_session first")
                    _audio(session, message)
                elif kind == "end_session":
                    if session is None:
                        raise RequestError(400, "start_session first")
                    await _end(request, session)
                    break
                else:
                    raise RequestError(400, f"unknown message type {kind!r} (start_session, audio_chunk, end_session)")
            except RequestError as exc:
                await error(str(exc))
    finally:
        app[ASR_CONNECTIONS_KEY].discard(ws)
        if session is not None and not session.ended:
            await session.speaker.finish()  # the client left: what it said is still stored
            if session.recorder is not None:
                await records(app).end_live(session.recorder)
        if not ws.closed:
            await ws.close()
    return ws


async def _start(request: web.Request, ws: web.WebSocketResponse, message: dict) -> RealtimeSession:
    session_id, language, meeting_id, user_id, rate = _start_fields(message)
    tenant = tenant_of(request, message.get("tenant_id"))
    kept = records(request.app)
    if kept is None:  # a server with records off: captions only
        session = RealtimeSession(ws, session_id, tenant, meeting_id or new_meeting_id(), rate)
        sinks = [session.on_caption]
    else:
        recorder = await kept.open_live(tenant, meeting_id, source="realtime", title=session_id, user_id=user_id)
        session = RealtimeSession(ws, session_id, tenant, recorder.meeting_id, rate)
        session.recorder = recorder
        session.offset = recorder.offset_of(time.time())
        sinks = [recorder.sink(session.offset), session.on_caption]
    config = request.app[CONFIG_KEY].stream_config(language)
    pipeline = Pipeline(sinks=sinks)
    session.speaker = LiveSpeaker(request.app[WORKER_KEY], config, name=user_id or session_id, pipeline=pipeline)
    session.push({"type": "session_started", "meeting_id": session.meeting_id, "tenant_id": tenant})
    return session


def _audio(session: RealtimeSession, message: dict) -> None:
    data = message.get("audio")
    if not isinstance(data, str):
        raise RequestError(400, "audio_chunk carries audio: base64 PCM s16le mono")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, "audio is not valid base64") from None
    if len(raw) % 2:
        raise RequestError(400, "PCM s16le audio has an even number of bytes")
    session.speaker.push(session.converter.pcm(raw, session.sample_rate))


async def _end(request: web.Request, session: RealtimeSession) -> None:
    session.ended = True
    await session.speaker.finish()
    kept = records(request.app)
    if kept is None:
        meeting = Meeting(session.tenant, session.meeting_id, "realtime", title=session.session_id, status="ended")
        finals = sorted(session.finals.values(), key=lambda s: (s.start, s.segment_id))
        document = compat_document(meeting, finals, time.perf_counter() - session.started)
        await session.ws.send_str(dumps({"type": "session_ended", "session_id": session.session_id, **document}))
        return
    await kept.end_live(session.recorder)
    meeting = await stored(kept.store.get_meeting, session.tenant, session.meeting_id)
    if meeting is None:  # deleted (DELETE /meetings/{id}) while the session ran
        await session.ws.send_str(
            dumps({"type": "error", "message": f"meeting {session.meeting_id!r} was deleted during the session"})
        )
        return
    segments = await stored(kept.store.segments, session.tenant, session.meeting_id)
    document = compat_document(meeting, segments, time.perf_counter() - session.started)
    await session.ws.send_str(dumps({"type": "session_ended", "session_id": session.session_id, **document}))
