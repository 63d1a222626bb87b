"""The page's WebRTC door (aiortc): WHIP-style offer/answer over HTTP, the microphone's
audio into the participant's speech stream, captions back on the data channel.

Messages from the page on the data channel: `{"type": "set_language", "language": "ko"}`
(what this microphone speaks; `auto` to detect), `{"type": "set_translation", "languages":
["ko"]}` (what this page reads: one language, or `[]` for captions as spoken; the session
translates into every language one of its pages reads) and `{"type": "ping", "t": ...}`."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from aiohttp import web

from ..audio import FrameConverter
from ..session.control import (
    ControlError,
    Ping,
    SetLanguage,
    SetTranslation,
    parse_control,
)
from ..session.formats import MEDIA_TYPES
from ..session.options import OptionsError, parse_language, parse_speaker_hints
from .keys import CONFIG_KEY, PEERS_KEY, SESSIONS_KEY, WORKER_KEY, live_streams, translation
from .records import records
from .responses import dumps, json_error
from .sessions import Participant
from .tenants import tenant_of

logger = logging.getLogger("roomscribe.web")

MAX_SDP_BYTES = 64 * 1024
PUSH_SAMPLES = 640  # 40 ms at 16 kHz: fewer, larger pushes cost the scheduler less


def add_routes(app: web.Application) -> None:
    app[PEERS_KEY] = {}
    app.router.add_post("/whip", offer)
    app.router.add_delete("/whip/{participant}", hang_up)
    app.router.add_get("/sessions/{session}/transcript", transcript)


async def offer(request: web.Request) -> web.Response:
    """POST an SDP offer (application/sdp) with ?session=&name=&language=&policy=&diarize=&read=;
    the answer comes back (201, application/sdp) with the participant in `Location`.
    `diarize=true` (with `num_speakers` ...): several people share this microphone.
    `read=ko`: this page reads the session's captions in Korean (translated)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    app = request.app
    if request.content_type != "application/sdp":
        return json_error(415, "send the SDP offer with Content-Type: application/sdp")
    body = await request.content.read(MAX_SDP_BYTES + 1)
    if len(body) > MAX_SDP_BYTES:
        return json_error(413, "SDP offer too large")
    sdp = body.decode("utf-8", "replace")
    if "m=audio" not in sdp:
        return json_error(400, "the offer has no audio (m=audio) section")
    try:
        config = app[CONFIG_KEY].stream_config(
            request.query.get("language"),
            request.query.get("policy"),
            request.query.get("task"),
            request.query.get("prompt"),
            parse_speaker_hints(request.query),
        )
        reads = _reading(request.query.get("read"))
        found = translation(app)
        tenant = tenant_of(request)
        session = app[SESSIONS_KEY].open(request.query.get("session"), found.service, found.unavailable, tenant)
    except (OptionsError, ValueError) as exc:
        return json_error(400, str(exc))
    except LookupError as exc:
        return json_error(503, str(exc))
    if live_streams(app) >= app[CONFIG_KEY].max_live_streams:
        return json_error(503, "the server is at its limit of live streams; try again later")

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
    participant = session.join(request.query.get("name"))
    await session.record(records(app))
    try:
        session.set_reading(participant, reads)
    except ControlError as exc:  # one language too many for the session
        await participant.leave()
        return json_error(400, str(exc))
    app[PEERS_KEY][participant.id] = participant

    async def close_transport() -> None:
        app[PEERS_KEY].pop(participant.id, None)
        await pc.close()

    participant.close_transport = close_transport

    @pc.on("datachannel")
    def on_datachannel(channel) -> None:
        def send(message: dict) -> None:
            if channel.readyState == "open":
                channel.send(dumps(message))

        participant.send = send
        send(
            {
                "type": "welcome",
                "session": session.id,
                "meeting": session.meeting_id if session.recorder is not None else None,
                "participant": participant.id,
                "name": participant.name,
                "color": participant.color,
                "reads": participant.reads,
            }
        )
        send(session.history())
        send(session.translation_message())
        session.broadcast({"type": "participants", "participants": session.roster()})

        @channel.on("message")
        def on_message(message) -> None:
            _control(participant, message)

    @pc.on("track")
    def on_track(track) -> None:
        if track.kind != "audio" or participant.speaker is not None:
            return
        speaker = participant.start_speaking(app[WORKER_KEY], config)
        asyncio.ensure_future(_pump(track, participant, speaker))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            await participant.leave()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception as exc:  # noqa: BLE001 - a malformed offer is the client's error
        await participant.leave()
        return json_error(400, f"could not use the SDP offer: {exc}")
    return web.Response(
        status=201,
        body=pc.localDescription.sdp.encode(),
        content_type="application/sdp",
        headers={"Location": f"/whip/{participant.id}", "X-Session": session.id, "X-Participant": participant.id},
    )


async def _pump(track, participant: Participant, speaker) -> None:
    """The microphone's frames (48 kHz Opus, decoded by aiortc) as 16 kHz mono samples."""
    from aiortc.mediastreams import MediaStreamError

    converter = FrameConverter()
    pending: list[np.ndarray] = []
    held = 0
    try:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            chunk = converter.av_frame(frame)
            pending.append(chunk)
            held += len(chunk)
            if held >= PUSH_SAMPLES:
                speaker.push(np.concatenate(pending))
                pending, held = [], 0
    except Exception:  # noqa: BLE001 - one broken track ends its own participant only
        logger.exception("participant %s: audio failed", participant.id)
    finally:
        rest = np.concatenate([*pending, converter.flush()])
        if len(rest):
            speaker.push(rest)
        await participant.leave()


def _reading(value: str | None) -> str | None:
    """The language a page reads (`read=`): one language, or None (as spoken)."""
    if value is None or value.strip().lower() == "original":
        return None
    if "," in value:
        raise OptionsError("read is the one language this page shows captions in, such as ko")
    return parse_language(value, "read")  # "" or auto: as spoken


def _control(participant: Participant, message) -> None:
    """Messages from the page: set_language (`auto` to detect), set_translation and ping."""
    reply = participant.send or (lambda _: None)
    try:
        command = parse_control(message, accepted=(SetLanguage, SetTranslation, Ping))
        if isinstance(command, SetTranslation):
            if len(command.languages) > 1:
                raise ControlError("a page reads one language: set_translation takes one (or [] for none)")
            # Every page hears of a change; this one hears the state in any case.
            told = participant.session.set_reading(participant, command.languages[0] if command.languages else None)
    except ControlError as exc:
        reply({"type": "error", "message": f"bad control message: {exc}"})
        return
    if isinstance(command, Ping):
        reply({"type": "pong", "t": command.t})
        return
    if isinstance(command, SetTranslation):
        reply({"type": "reading", "language": participant.reads})
        if not told:
            reply(participant.session.translation_message())
        return
    if participant.speaker is not None:
        participant.speaker.set_language(command.language)
    reply({"type": "language", "language": command.language or "auto"})


async def hang_up(request: web.Request) -> web.Response:
    participant = request.app[PEERS_KEY].get(request.match_info["participant"])
    if participant is None or participant.session.tenant != tenant_of(request):
        return json_error(404, "no such participant")
    await participant.leave()
    return web.Response(status=200)


TRANSCRIPT_FORMATS = ("txt", "srt", "vtt", "json")


async def transcript(request: web.Request) -> web.Response:
    session = request.app[SESSIONS_KEY].get(request.match_info["session"], tenant_of(request))
    if session is None:
        return json_error(404, "no such session")
    fmt = request.query.get("format", "txt")
    if fmt not in TRANSCRIPT_FORMATS:
        return json_error(400, f"format is one of {', '.join(TRANSCRIPT_FORMATS)}")
    body = session.transcript.render(fmt)
    return web.Response(
        text=body,
        content_type=MEDIA_TYPES[fmt],
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="roomscribe-{session.id}.{fmt}"'},
    )
