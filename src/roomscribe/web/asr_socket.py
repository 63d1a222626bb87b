"""`/asr`: the WebSocket streaming API, compatible with WhisperLiveKit's.

Query options: `language` (a Whisper code or `auto`), `policy` (`localagreement` or
`alignatt`), `mode` (`full`: the whole state on every update; `diff`: a snapshot, then
new lines only, and a snapshot again when a line already sent was revised), `prompt`
(names and words to expect), `input` (`pcm`, `encoded`; by default the first bytes decide),
and `diarization=true` (with `num_speakers` or `min_speakers`/`max_speakers`): several voices
on one stream, each line's `speaker` numbered 1, 2, ... by voice. A line is attributed when it
is committed, so `buffer_diarization` (text awaiting a speaker) stays empty.

`translate_to=ko` (or several, comma-separated: `es,ko`): each line gets `translation` (its
text in the first of them, "" until it arrives) and `translations` (every one of them); a line
already in a target language is its own translation. `buffer_translation` is the provisional
translation of the line still open (of its words up to the last clause the translation stage
sent ahead, in the first language), else "". Captions never wait for translations: a line goes
out as soon as it is heard and again when its translation is ready; the end of the audio waits
up to `TRANSLATION_DRAIN_SECONDS` for the last lines' translations before `ready_to_stop`.
A language that is not one is refused like any bad option (400 before the upgrade); a server
without a translator, or one whose translations fail, says so in an `{"error": ...}` message
and captions go on without them.

`meeting_id=standup-42` stores the connection's finals in that meeting of the key's tenant
(made on first use; several connections may share it, each named by `name`, with `user_id`);
`GET /meetings/{id}` reads it back. Without it nothing is stored.

The client sends binary frames: PCM s16le 16 kHz mono, or a compressed stream (WebM/Opus
from MediaRecorder, Ogg, MP4 ...); an empty frame ends the audio. The server sends
`{"type": "config", ...}` first, then updates with `lines`, `buffer_transcription`,
`remaining_time_transcription` ..., and `{"type": "ready_to_stop"}` once everything is
transcribed. JSON text frames: `{"type": "set_language", "language": "ko"}`,
`{"type": "set_translation", "languages": ["ko"]}`, `{"type": "stop"}`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp
import numpy as np
from aiohttp import web

from ..audio import StreamDecoder, pcm16_to_float, sniff_format
from ..engine import StreamConfig
from ..session import Caption, LiveSpeaker, Pipeline, Transcript
from ..session.control import (
    ControlError,
    SetLanguage,
    SetTranslation,
    Stop,
    parse_control,
    parse_translation_languages,
)
from ..session.options import OptionsError, parse_speaker_hints
from ..session.records import MeetingRecorder
from ..session.scheduler import EngineWorker
from ..session.translation import TranslationStage, TranslationTargets
from .keys import ASR_CONNECTIONS_KEY, CONFIG_KEY, WORKER_KEY, Translation, live_streams, translation
from .records import meeting_id_field, records
from .responses import dumps, json_error
from .tenants import tenant_of

logger = logging.getLogger("roomscribe.web")

MAX_MESSAGE_BYTES = 1024 * 1024
TRANSLATION_DRAIN_SECONDS = 20.0  # the most the end of a stream waits for its last translations
UNTRANSLATED = "captions go on without translations"


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _speaker_number(caption: Caption) -> int:
    """WhisperLiveKit numbers speakers from 1; an undiarized stream is all speaker 1."""
    label = caption.speaker or ""
    return int(label[1:]) if label[:1] == "S" and label[1:].isdigit() else 1


def _line(caption: Caption, targets: tuple[str, ...] = ()) -> dict:
    out = {
        "speaker": _speaker_number(caption),
        "text": caption.text,
        "start": _clock(caption.start),
        "end": _clock(caption.end),
    }
    if caption.language:
        out["detected_language"] = caption.language
    if targets:
        translations = {target: _translation(caption, target) for target in targets}
        out["translation"] = translations[targets[0]]
        out["translations"] = translations
    return out


def _translation(caption: Caption, target: str) -> str:
    """A line in `target`: its translation, itself where it was spoken in it, else "" (yet)."""
    if caption.language == target:
        return caption.text
    return caption.translations.get(target, "")


class AsrSession:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        worker: EngineWorker,
        config: StreamConfig,
        mode: str,
        input_kind: str,
        targets: TranslationTargets | None = None,
        translation: Translation | None = None,
        recorder: MeetingRecorder | None = None,
        name: str = "speaker",
    ):
        self.ws = ws
        self.mode = mode
        self.input_kind = input_kind
        self.transcript = Transcript()
        self.targets = targets or TranslationTargets()
        self.translation = translation or Translation(None, "no translator")
        self.stage: TranslationStage | None = None
        stages = []
        if self.translation.service is not None:
            self.stage = TranslationStage(
                self.translation.service, self.targets, audio_of=lambda c: self.speaker.caption_audio(c)
            )
            stages.append(self.stage)
        # Stored before it is sent: a final the client has seen is in the meeting's record.
        stored = [recorder.sink(time.time() - recorder.started_at)] if recorder is not None else []
        self.speaker = LiveSpeaker(
            worker, config, name=name, pipeline=Pipeline(stages, sinks=[*stored, self._on_caption])
        )
        self._provisional: dict[str, dict[str, str]] = {}  # open segment -> its provisional translations
        self._remove_listener: Callable[[], None] | None = None
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
        await self._last_translations()
        self.finished = True
        await self._send_update()

    # -- translation ----------------------------------------------------------------
    @property
    def translating(self) -> bool:
        """Whether lines carry translations (asked for, and a translator to make them)."""
        return bool(self.targets) and self.translation.service is not None

    def start_translation(self) -> str | None:
        """Follow the translator's state; the error to tell the client, if any."""
        service = self.translation.service
        if service is not None and self._remove_listener is None:
            self._remove_listener = service.add_state_listener(self._translation_state)
        if not self.targets:
            return None
        if service is None:
            return f"translation is unavailable on this server: {self.translation.unavailable} ({UNTRANSLATED})"
        if service.state == "failing":
            return f"translation is failing: {service.last_error} ({UNTRANSLATED})"
        return None

    def _translation_state(self, state: str, error: str | None) -> None:
        """The translator started failing (or works again: translations simply resume)."""
        if state == "failing" and self.targets:
            asyncio.ensure_future(self.send({"error": f"translation is failing: {error} ({UNTRANSLATED})"}))

    def _buffer_translation(self) -> str:
        """The provisional translation of the open line (of its words up to a clause the
        stage sent ahead), in the first language; "" when there is none."""
        if not self.translating:
            return ""
        target = self.targets.languages[0]
        for segment, translations in self._provisional.items():
            line = self.transcript.segments.get(segment)
            if line is not None and not line.final and target in translations:
                return translations[target]
        return ""

    async def _last_translations(self) -> None:
        """The audio has ended: wait (a little) for the translations of the last lines, so
        that the last update has them. Stops as soon as the translator has nothing left of
        them: a translation that failed or was dropped does not come."""
        service = self.translation.service
        if service is None or not self.targets:
            return
        deadline = time.monotonic() + TRANSLATION_DRAIN_SECONDS
        while time.monotonic() < deadline and not self.ws.closed:
            missing = [
                c
                for c in self.transcript.segments.values()
                if c.final and c.text.strip() and any(_translation(c, t) == "" for t in self.targets.languages)
            ]
            if not missing:
                return
            status = service.status()
            if not status["queued"] and not status["running"]:
                await asyncio.sleep(0.05)  # a result handed to this loop just before runs now
                if not service.queued and not service.status()["running"]:
                    return
                continue
            await asyncio.sleep(0.05)

    def close_translation(self) -> None:
        if self.stage is not None:
            self.stage.close()
        if self._remove_listener is not None:
            self._remove_listener()
            self._remove_listener = None

    # -- updates out ----------------------------------------------------------------
    def _on_caption(self, caption: Caption) -> None:
        self.heard_speech = True
        if caption.translated and not caption.final:
            # A provisional translation of the open line's words so far: it goes in the buffer;
            # the line itself stays as it is now (this caption is an older state of it).
            self._provisional.setdefault(caption.segment_id, {}).update(caption.translations)
        else:
            self.transcript(caption)
            if caption.final:
                self._provisional.pop(caption.segment_id, None)
        self.schedule_update()

    def schedule_update(self) -> None:
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
        targets = self.targets.languages if self.translating else ()
        return {
            "status": "active_transcription" if self.heard_speech else "no_audio_detected",
            "lines": [_line(line, targets) for line in done],
            "buffer_transcription": buffer,
            "buffer_diarization": "",
            "buffer_translation": self._buffer_translation(),
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


def _translate_to(value: str | None) -> TranslationTargets:
    """`translate_to=es,ko`: the languages lines are translated into (an `OptionsError` names
    a wrong one)."""
    try:
        return TranslationTargets(parse_translation_languages(value, "translate_to"))
    except ControlError as exc:
        message = str(exc).removeprefix("translation language: ")
        raise OptionsError(message if message.startswith("translate_to") else f"translate_to: {message}") from None


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
        targets = _translate_to(",".join(query.getall("translate_to", [])) or None)
        tenant, meeting_id = tenant_of(request), meeting_id_field(query.get("meeting_id"))
        name = (query.get("name") or "").strip()[:64] or "speaker"
    except (OptionsError, ValueError) as exc:
        return json_error(400, str(exc))
    if live_streams(app) >= app[CONFIG_KEY].max_live_streams:
        return json_error(503, "the server is at its limit of live streams; try again later")
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE_BYTES, heartbeat=30.0)
    if not ws.can_prepare(request).ok:
        return json_error(426, "/asr is a WebSocket endpoint")
    await ws.prepare(request)
    app[ASR_CONNECTIONS_KEY].add(ws)

    kept = records(app) if meeting_id else None  # a connection is stored as (part of) the meeting it names
    recorder = None
    if kept is not None:
        recorder = await kept.open_live(tenant, meeting_id, source="asr", user_id=query.get("user_id") or None)
    session = AsrSession(ws, app[WORKER_KEY], config, mode, input_kind, targets, translation(app), recorder, name)
    ended = False
    try:
        await session.send({"type": "config", "useAudioWorklet": input_kind != "encoded", "mode": mode})
        problem = session.start_translation()
        if problem:
            await session.send({"error": problem})
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
        session.close_translation()
        if not ended or session.decoder_error:
            session.speaker.close()  # the client is gone: nobody to caption for
            if session.decoder is not None:
                session.decoder.end()
        app[ASR_CONNECTIONS_KEY].discard(ws)
        if kept is not None and recorder is not None:
            await kept.end_live(recorder)  # before the close: a client that reads it then sees it ended
        if not ws.closed:
            await ws.close()
    return ws


async def _text_message(session: AsrSession, text: str) -> bool:
    """Handle a JSON text frame; True when it asks to stop."""
    try:
        command = parse_control(text, accepted=(SetLanguage, SetTranslation, Stop))
    except ControlError as exc:
        await session.send({"error": f"bad message: {exc}"})
        return False
    if isinstance(command, Stop):
        return True
    if isinstance(command, SetTranslation):
        try:
            session.targets.set(command.languages)
        except ControlError as exc:  # languages this server's translator cannot give
            await session.send({"error": f"bad message: {exc}"})
            return False
        problem = session.start_translation()
        if problem:
            await session.send({"error": problem})
        session.schedule_update()
        return False
    session.speaker.set_language(command.language)
    return False
