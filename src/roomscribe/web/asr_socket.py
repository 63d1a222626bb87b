"""`/asr`: the WebSocket streaming API, compatible with WhisperLiveKit's.

Query options: `language` (a Whisper code or `auto`), `policy` (`localagreement` or
`alignatt`), `mode` (`full`: the whole state on every update; `diff`: a snapshot, then
new lines only, and a snapshot again when a line already sent was revised), `prompt`
(names and words to expect), `input` (`pcm`, `encoded`; by default the first bytes decide),
and `diarization=true` (with `num_speakers` or `min_speakers`/`max_speakers`): several voices
on one stream, each line's `speaker` numbered 1, 2, ... by voice. A line is attributed when it
is committed, so `buffer_diarization` (text awaiting a speaker) stays empty.

The client sends binary frames: PCM s16le 16 kHz mono, or a compressed stream (WebM/Opus
from MediaRecorder, Ogg, MP4 ...); an empty frame ends the audio. The server sends
`{"type": "config", ...}` first, then updates with `lines`, `buffer_transcription`,
`remaining_time_transcription` ..., and `{"type": "ready_to_stop"}` once everything is
transcribed. JSON text frames: `{"type": "set_language", "language": "ko"}`, `{"type": "stop"}`.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import numpy as np
from aiohttp import web

from ..audio import StreamDecoder, pcm16_to_float, sniff_format
from ..engine import StreamConfig
from ..session import Caption, LiveSpeaker, Pipeline, Transcript
from ..session.control import ControlError, SetLanguage, Stop, parse_control
from ..session.options import OptionsError, parse_speaker_hints
from ..session.scheduler import EngineWorker
from .keys import ASR_CONNECTIONS_KEY, CONFIG_KEY, WORKER_KEY, live_streams
from .responses import dumps, json_error

logger = logging.getLogger("roomscribe.web")

MAX_MESSAGE_BYTES = 1024 * 1024


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _speaker_number(caption: Caption) -> int:
    """WhisperLiveKit numbers speakers from 1; an undiarized stream is all speaker 1."""
    label = caption.speaker or ""
    return int(label[1:]) if label[:1] == "S" and label[1:].isdigit() else 1


def _line(caption: Caption) -> dict:
    out = {
        "speaker": _speaker_number(caption),
        "text": caption.text,
        "start": _clock(caption.start),
        "end": _clock(caption.end),
    }
    if caption.language:
        out["detected_language"] = caption.language
    return out


class AsrSession:
    def __init__(
        self, ws: web.WebSocketResponse, worker: EngineWorker, config: StreamConfig, mode: str, input_kind: str
    ):
        self.ws = ws
        self.mode = mode
        self.input_kind = input_kind
        self.transcript = Transcript()
        self.speaker = LiveSpeaker(
            worker, config, name="speaker", pipeline=Pipeline(sinks=[self.transcript, self._on_caption])
        )
        self.heard_speech = False
        self.decoder: StreamDecoder | None = None
        self.decoder_done = asyncio.Event()
        self.decoder_error: str | None = None
        self._odd = b""
        self.finished = False  # everything given has been transcribed
        self._seq = 0
        self._sent_lines: list[dict] = []
        self._update_pending = False
        self.loop = asyncio.get_running_loop()

    # -- audio in -------------------------------------------------------------------
    def audio(self, data: bytes) -> None:
        if self.decoder is None and self.input_kind != "pcm" and (self.input_kind == "encoded" or _looks_encoded(data)):
            self.decoder = StreamDecoder(data[:16], self._decoded, self._decoder_done)
        if self.decoder is not None:
            self.decoder.feed(data)
            return
        self.input_kind = "pcm"  # the first bytes decided: later chunks are PCM whatever they start with
        data = self._odd + data
        usable = len(data) - len(data) % 2
        self._odd = data[usable:]
        if usable:
            self.speaker.push(pcm16_to_float(data[:usable]))

    def _decoded(self, samples: np.ndarray) -> None:  # decoder thread
        self.loop.call_soon_threadsafe(self.speaker.push, samples)

    def _decoder_done(self, error: str | None) -> None:  # decoder thread
        def done():
            self.decoder_error = error
            self.decoder_done.set()

        self.loop.call_soon_threadsafe(done)

    async def end_of_audio(self) -> None:
        if self.decoder is not None:
            self.decoder.end()
            await self.decoder_done.wait()
        await self.speaker.finish()
        self.finished = True
        await self._send_update()

    # -- updates out ----------------------------------------------------------------
    def _on_caption(self, caption: Caption) -> None:
        self.heard_speech = True
        if not self._update_pending:  # one update for all events of one model call
            self._update_pending = True
            self.loop.call_soon(lambda: asyncio.ensure_future(self._send_update()))

    def state(self) -> dict:
        lines = list(self.transcript.segments.values())
        if self.mode == "diff":  # lines only ever appended: an open segment stays in the buffer
            done = [line for line in lines if line.final and line.text]
            buffer = " ".join(line.shown for line in lines if not line.final)
        else:
            done = [line for line in lines if line.text]
            buffer = "".join(line.tail for line in lines if not line.final).strip()
        return {
            "status": "active_transcription" if self.heard_speech else "no_audio_detected",
            "lines": [_line(line) for line in done],
            "buffer_transcription": buffer,
            "buffer_diarization": "",
            "buffer_translation": "",
            "remaining_time_transcription": 0.0
            if self.finished
            else round(max(self.speaker.lag, self.speaker.queued_seconds), 2),
            "remaining_time_diarization": 0.0,
        }

    async def _send_update(self) -> None:
        self._update_pending = False
        if self.ws.closed:
            return
        state = self.state()
        if self.mode == "diff":
            self._seq += 1
            lines = state.pop("lines")
            # A line already sent that changed (a revised final) cannot be a diff: resend all.
            if self._seq == 1 or lines[: len(self._sent_lines)] != self._sent_lines:
                state = {"type": "snapshot", "seq": self._seq, **state, "lines": lines}
            else:
                state = {"type": "diff", "seq": self._seq, **state, "n_lines": len(lines)}
                if len(lines) > len(self._sent_lines):
                    state["new_lines"] = lines[len(self._sent_lines) :]
            self._sent_lines = lines
        try:
            await self.ws.send_str(dumps(state))
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away; the handler cleans up

    async def send(self, message: dict) -> None:
        if not self.ws.closed:
            try:
                await self.ws.send_str(dumps(message))
            except ConnectionResetError:
                pass  # the client went away; the handler cleans up


def _looks_encoded(data: bytes) -> bool:
    return sniff_format(data[:16], frame_sync=False) is not None


async def asr_socket(request: web.Request) -> web.StreamResponse:
    app = request.app
    query = request.query
    mode = query.get("mode", "full")
    input_kind = query.get("input", "auto")
    try:
        config = app[CONFIG_KEY].stream_config(
            query.get("language"),
            query.get("policy"),
            query.get("task"),
            query.get("prompt"),
            parse_speaker_hints(query, "diarization"),
        )
        if mode not in ("full", "diff"):
            raise ValueError("mode is full or diff")
        if input_kind not in ("auto", "pcm", "encoded"):
            raise ValueError("input is auto, pcm or encoded")
    except (OptionsError, ValueError) as exc:
        return json_error(400, str(exc))
    if live_streams(app) >= app[CONFIG_KEY].max_live_streams:
        return json_error(503, "the server is at its limit of live streams; try again later")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return json_error(426, "/asr is a WebSocket endpoint")
    await ws.prepare(request)
    app[ASR_CONNECTIONS_KEY].add(ws)

    session = AsrSession(ws, app[WORKER_KEY], config, mode, input_kind)
    ended = False
    try:
        await session.send({"type": "config", "useAudioWorklet": input_kind != "encoded", "mode": mode})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                if not msg.data:
                    ended = True
                    break
                try:
                    session.audio(msg.data)
                except ValueError as exc:
                    await session.send({"error": str(exc)})
                    await ws.close(code=1003, message=b"unsupported audio")
                    break
                if session.decoder_done.is_set() and session.decoder_error:
                    break
            elif msg.type == aiohttp.WSMsgType.TEXT:
                if await _text_message(session, msg.data):  # a stop message
                    ended = True
                    break
            elif msg.type == aiohttp.WSMsgType.ERROR:
                logger.info("/asr connection error: %s", ws.exception())
                break
        if session.decoder_error:
            await session.send({"error": session.decoder_error})
            await ws.close(code=1007, message=b"undecodable audio")
        elif ended and not ws.closed:
            await session.end_of_audio()
            if session.decoder_error:  # the stream turned out undecodable only at its end
                await session.send({"error": session.decoder_error})
                await ws.close(code=1007, message=b"undecodable audio")
            else:
                await session.send({"type": "ready_to_stop"})
    finally:
        if not ended or session.decoder_error:
            session.speaker.close()  # the client is gone: nobody to caption for
            if session.decoder is not None:
                session.decoder.end()
        app[ASR_CONNECTIONS_KEY].discard(ws)
        if not ws.closed:
            await ws.close()
    return ws


async def _text_message(session: AsrSession, text: str) -> bool:
    """Handle a JSON text frame; True when it asks to stop."""
    try:
        command = parse_control(text, accepted=(SetLanguage, Stop))
    except ControlError as exc:
        await session.send({"error": f"bad message: {exc}"})
        return False
    if isinstance(command, Stop):
        return True
    session.speaker.set_language(command.language)
    return False
