"""File transcription over HTTP: `POST /transcribe` and OpenAI's `POST /v1/audio/transcriptions`
and `/v1/audio/translations` (`task=translate`: Whisper's own translation into English).

Files take the shared model between live streams' calls (the model lock is held per
window), one file at a time by default with a short queue; a full queue is a 503.
`/transcribe?progress=true` (or `Accept: application/x-ndjson`) streams progress lines
before the result, for long files.

`translate_to=es,ko` translates each segment once the file is transcribed, through the
process's one translation queue (`keys.translation(app)`; its model loads on first use):
JSON segments get `translations`, and `/transcribe?format=srt|vtt|txt&subtitle_language=es`
shows one of them. Where the process has no translator, asking for one is a 501.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import mimetypes
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from aiohttp import MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..audio import SAMPLE_RATE, AudioFileError, TooLongError, UnsupportedFormatError, load_audio
from ..diarization.extras import DiarizationUnavailableError, check_hints, require_packages
from ..engine import OfflineTranscript
from ..engine.clusters import SpeakerHints
from ..session.caption import Caption
from ..session.control import ControlError
from ..session.file_jobs import QueueFull
from ..session.formats import MEDIA_TYPES, render, segment_captions, transcript_document, translated_text
from ..session.options import OptionsError, parse_language, parse_speaker_hints, parse_task
from ..session.records import MeetingRecords
from ..session.translation import TranslationTargets, translate_captions
from ..store import Meeting, StoreError
from ..translation import TranslationService, TranslationUnavailableError
from . import keys
from .keys import CONFIG_KEY, FILES_KEY
from .records import meeting_id_field, records
from .responses import RequestError, dumps, json_error
from .tenants import tenant_of

logger = logging.getLogger("roomscribe.web")

CHUNK = 256 * 1024
MAX_FIELD_BYTES = 4096
OPENAI_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
UPLOAD_FORMATS = ("json", "txt", "text", "srt", "vtt")  # /transcribe's `format`
SUBTITLE_FORMATS = ("txt", "text", "srt", "vtt")  # the ones `subtitle_language` applies to
PROGRESS_EVERY = 0.5  # seconds between progress lines
# Fields that may be given more than once (`translate_to=es&translate_to=ko`), or as a list the
# way OpenAI's client sends one (`translate_to[]`): their values are joined with commas.
LIST_FIELDS = ("translate_to",)


def _field_name(name: str) -> str:
    return name[:-2] if name.endswith("[]") and name[:-2] in LIST_FIELDS else name


def _add_field(fields: dict[str, str], name: str, value: str) -> None:
    name = _field_name(name)
    if name in LIST_FIELDS and fields.get(name):
        value = f"{fields[name]},{value}"
    fields[name] = value


def query_fields(request: web.Request) -> dict[str, str]:
    """The request's query options (the first of each, every one of a list field)."""
    fields: dict[str, str] = {}
    for name, value in request.query.items():
        if _field_name(name) in LIST_FIELDS or name not in fields:
            _add_field(fields, name, value)
    return fields


async def read_upload(request: web.Request, max_bytes: int) -> tuple[bytes, str, dict[str, str]]:
    """The uploaded file (multipart field `file`, or a raw audio body), its name and the
    other form fields. Reading stops at `max_bytes`."""
    kind = request.content_type
    if kind == "multipart/form-data":
        try:
            reader = await request.multipart()
        except (ValueError, AssertionError) as exc:
            raise RequestError(400, f"malformed multipart body: {exc}") from None
        data, name, fields = None, "upload", {}
        while True:
            try:
                part = await reader.next()
            except (ValueError, AssertionError, HttpProcessingError) as exc:
                raise RequestError(400, f"malformed multipart body: {getattr(exc, 'message', exc)}") from None
            if part is None:
                break
            if isinstance(part, MultipartReader):
                raise RequestError(400, "malformed multipart body: nested multipart parts are not accepted")
            if part.name == "file":
                name = part.filename or name
                data = await _read_limited(part, max_bytes)
            elif part.name:
                try:
                    value = await _read_limited(part, MAX_FIELD_BYTES)
                except RequestError:  # most likely the audio, in a field with another name
                    raise RequestError(
                        400,
                        f"form field {part.name!r} is over {MAX_FIELD_BYTES} bytes: "
                        "send the audio in a multipart field named 'file'",
                    ) from None
                _add_field(fields, part.name, value.decode("utf-8", "replace"))
        if data is None:
            raise RequestError(400, "no file: send the audio in a multipart field named 'file'")
        return data, name, fields
    if kind.startswith(("audio/", "video/")) or kind == "application/octet-stream":
        return await _read_limited(request.content, max_bytes), "upload", query_fields(request)
    raise RequestError(
        415,
        f"unsupported content type {kind or 'none'}: send multipart/form-data with a "
        "'file' field, or the audio itself with an audio/* content type",
    )


async def _read_limited(source, max_bytes: int) -> bytes:
    chunks, size = [], 0
    while True:
        chunk = await source.read_chunk(CHUNK) if hasattr(source, "read_chunk") else await source.read(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"upload larger than the limit of {max_bytes / 1024**2:.3g} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def decode(app: web.Application, data: bytes, name: str):
    """A file's audio at 16 kHz (`load_audio`, within the server's length limit); a
    `RequestError` for what is not audio, too long or broken."""
    config = app[CONFIG_KEY]
    try:
        return await asyncio.to_thread(
            load_audio, data, max_seconds=config.max_file_minutes * 60, name=name, untrusted=True
        )
    except UnsupportedFormatError as exc:
        raise RequestError(415, str(exc)) from None
    except TooLongError as exc:
        raise RequestError(413, str(exc)) from None
    except AudioFileError as exc:
        raise RequestError(400, str(exc)) from None


def _language(fields: dict[str, str]) -> str | None:
    try:
        return parse_language(fields.get("language"))
    except OptionsError as exc:
        raise RequestError(400, str(exc)) from None


def _task(fields: dict[str, str]) -> str:
    try:
        return parse_task(fields.get("task"))
    except OptionsError as exc:
        raise RequestError(400, str(exc)) from None


def _speakers(fields: dict[str, str], diarizer: str) -> SpeakerHints | None:
    """`diarize=true` and its hints; checked before the upload is decoded."""
    try:
        hints = parse_speaker_hints(fields)
        if hints is not None:
            check_hints(diarizer, hints)
            require_packages(diarizer)
    except ValueError as exc:  # OptionsError and hints the backend cannot meet
        raise RequestError(400, str(exc)) from None
    except DiarizationUnavailableError as exc:
        raise RequestError(501, str(exc)) from None
    return hints


# -- translation -------------------------------------------------------------------------------


def translation_service(app: web.Application) -> TranslationService:
    """The app's translation queue (the process's one, `shared_translation()`: made once, its
    model loaded on the first translation), or a 501 saying why there is none."""
    translation = keys.translation(app)
    if translation.service is None:
        raise RequestError(501, translation.unavailable or "translation is off on this server")
    return translation.service


def translation_status(app: web.Application) -> dict:
    """For `/status`: the translation queue's state (backend, state, last error, lag, counts),
    or why there is none."""
    found = keys.translation(app)
    if found.service is None:
        return {"state": "unavailable", "reason": found.unavailable}
    return found.service.status()


@dataclass(frozen=True)
class Translation:
    """What a request asks to have translated: into `targets`, with text, srt and vtt in
    `subtitles` (None: as spoken)."""

    service: TranslationService
    targets: TranslationTargets
    subtitles: str | None = None


def _translation(app: web.Application, fields: Mapping[str, str], fmt: str = "json") -> Translation | None:
    """`translate_to` and `subtitle_language`, checked before the upload is decoded: a bad
    language is a 400, a process without a translator a 501."""
    try:
        targets = TranslationTargets(fields.get("translate_to") or ())
    except ControlError as exc:
        message = str(exc).removeprefix("languages: ").removeprefix("translation language: ")
        raise RequestError(400, f"translate_to: {message}") from None
    subtitles = None
    if fields.get("subtitle_language"):
        try:
            subtitles = parse_language(fields["subtitle_language"], "subtitle_language")
        except OptionsError as exc:
            raise RequestError(400, str(exc)) from None
        if fmt not in SUBTITLE_FORMATS:
            raise RequestError(400, f"subtitle_language is for format txt, srt or vtt, not {fmt}")
        if subtitles is not None and subtitles not in targets.languages:
            asked = ", ".join(targets.languages) or "none"
            raise RequestError(
                400, f"subtitle_language {subtitles} is not among translate_to ({asked}): add it there too"
            )
    if not targets:
        return None
    return Translation(translation_service(app), targets, subtitles)


async def _translate(
    result: OfflineTranscript, task: str, translation: Translation | None, audio=None
) -> list[Caption]:
    """The file's segments as captions, translated where asked (in place, in order)."""
    captions = segment_captions(result.segments, language="en" if task == "translate" else result.language)
    if translation is None:
        return captions
    await _load_translator(translation.service)
    await translate_captions(translation.service, captions, translation.targets, audio=audio)
    needed = [(c, t) for c in captions if c.text for t in translation.targets.languages if t != c.language]
    missing = sum(1 for c, t in needed if t not in c.translations)
    if missing and missing == len(needed):
        raise RequestError(500, f"translation failed: {translation.service.last_error or 'no translation came back'}")
    if missing:
        logger.warning(
            "%d of %d translations of a file failed: %s", missing, len(needed), translation.service.last_error
        )
    return captions


async def _load_translator(service: TranslationService) -> None:
    """Load the backend's model (the first time only) before a file's segments are queued, so
    that the first segment's timeout does not count the load."""
    load = getattr(service.translator, "load", None)
    if load is None:
        return
    try:
        await asyncio.to_thread(load)
    except TranslationUnavailableError as exc:
        raise RequestError(501, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - answered as the server's failure, with its reason
        logger.exception("loading the translation model failed")
        raise RequestError(500, f"the translation model failed to load: {exc}") from None


@dataclass(frozen=True)
class Transcribed:
    result: OfflineTranscript
    captions: list[Caption]  # one per segment, with its translations
    languages: tuple[str, ...]  # what it was translated into

    def document(self) -> dict:
        return transcript_document(self.result, self.captions, self.languages)


@dataclass(frozen=True)
class FileOptions:
    """How a file is transcribed, from a request's fields (checked before it is decoded)."""

    language: str | None = None
    prompt: str | None = None
    task: str = "transcribe"
    speakers: SpeakerHints | None = None  # diarize, with these hints
    translation: Translation | None = None

    @classmethod
    def from_fields(cls, app: web.Application, fields: Mapping[str, str], fmt: str = "json") -> FileOptions:
        return cls(
            language=_language(fields),
            prompt=fields.get("prompt") or None,
            task=_task(fields),
            speakers=_speakers(fields, app[CONFIG_KEY].diarizer),
            translation=_translation(app, fields, fmt),
        )

    def params(self) -> dict:
        """What a stored job records of its options."""
        return {
            "language": self.language,
            "task": self.task,
            "diarize": self.speakers is not None,
            "translate_to": list(self.translation.targets.languages) if self.translation else [],
        }


async def transcribe(
    app: web.Application, audio, options: FileOptions, progress: Callable[[float, float], None] | None = None
) -> Transcribed:
    """A decoded file through the shared model (taking turns with live streams), translated
    where asked; a full queue is a 503."""
    task, translation = options.task, options.translation
    try:
        result = await app[FILES_KEY].run(audio, options.language, options.prompt, progress, task, options.speakers)
    except QueueFull as exc:
        raise RequestError(503, str(exc)) from None
    captions = await _translate(result, task, translation, audio)
    return Transcribed(result, captions, translation.targets.languages if translation else ())


def _speakers_of(result: OfflineTranscript) -> dict:
    doc = transcript_document(result)
    return {k: doc[k] for k in ("speakers", "total_speakers") if k in doc}


def _format(fields: Mapping[str, str]) -> str:
    fmt = fields.get("format") or "json"
    if fmt not in UPLOAD_FORMATS:
        raise RequestError(400, f"format is one of {', '.join(UPLOAD_FORMATS)}")
    return fmt


async def transcribe_upload(request: web.Request) -> web.StreamResponse:
    """Our own file endpoint: segments, words, language, processing_time (or, with `format`,
    text, srt or vtt)."""
    config = request.app[CONFIG_KEY]
    try:
        data, name, fields = await read_upload(request, int(config.max_upload_mb * 1024**2))
        fields = {**query_fields(request), **fields}
        fmt = _format(fields)
        options = FileOptions.from_fields(request.app, fields, fmt)
        keep = Keeping.of(request, fields, name, data)
        progress = fields.get("progress", "").lower() in ("1", "true", "yes") or "application/x-ndjson" in (
            request.headers.get("Accept", "")
        )
        if progress and fmt != "json":
            raise RequestError(400, f"progress lines end with the JSON result: ask for format json, not {fmt}")
        audio = await decode(request.app, data, name)
        del data
        if progress:
            return await _with_progress(request, audio, options, keep)
        done = await transcribe(request.app, audio, options)
        meeting = await keep.save(done)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    headers = {MEETING_HEADER: meeting.id} if meeting is not None else {}
    if fmt == "json":
        return web.json_response(_with_meeting(done.document(), meeting), dumps=dumps, headers=headers)
    translation = options.translation
    body = render(done.captions, fmt, language=translation.subtitles if translation else None)
    return web.Response(text=body, content_type=MEDIA_TYPES[fmt], charset="utf-8", headers=headers)


async def _with_progress(request: web.Request, audio, options: FileOptions, keep: Keeping) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[dict] = asyncio.Queue()
    last = [0.0]

    def progress(done: float, total: float) -> None:  # worker thread
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY:
            last[0] = now
            loop.call_soon_threadsafe(
                lines.put_nowait, {"type": "progress", "done": round(done, 1), "total": round(total, 1)}
            )

    total = round(len(audio) / SAMPLE_RATE, 1)
    await response.write((dumps({"type": "progress", "done": 0.0, "total": total}) + "\n").encode())

    async def run() -> tuple[Transcribed, Meeting | None]:
        done = await transcribe(request.app, audio, options, progress)
        return done, await keep.save(done)

    job = asyncio.ensure_future(run())
    try:
        while not job.done():
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await response.write((dumps(getter.result()) + "\n").encode())
            else:
                getter.cancel()
        try:
            done, meeting = job.result()
            out = {"type": "result", **_with_meeting(done.document(), meeting)}
        except RequestError as exc:
            out = {"type": "error", "error": {"message": str(exc), "code": exc.status}}
        await response.write((dumps(out) + "\n").encode())
        await response.write_eof()
    finally:
        job.cancel()  # the client went away mid-file: stop transcribing for it
    return response


async def openai_transcriptions(request: web.Request) -> web.Response:
    """OpenAI-compatible: form fields file, model (any), language, prompt, response_format."""
    return await _openai(request, "transcribe")


async def openai_translations(request: web.Request) -> web.Response:
    """OpenAI-compatible: speech in any language as English text (Whisper's own translation)."""
    return await _openai(request, "translate")


async def _openai(request: web.Request, task: str) -> web.Response:
    config = request.app[CONFIG_KEY]
    try:
        data, name, fields = await read_upload(request, int(config.max_upload_mb * 1024**2))
        fields = {**query_fields(request), **fields}
        fmt = fields.get("response_format", "json")
        if fmt not in OPENAI_FORMATS:
            raise RequestError(400, f"response_format is one of {', '.join(OPENAI_FORMATS)}")
        if fields.get("subtitle_language"):
            raise RequestError(400, "subtitle_language is an option of /transcribe (format srt, vtt or txt)")
        if fields.get("translate_to") and fmt not in ("json", "verbose_json"):
            raise RequestError(400, f"translate_to needs response_format json or verbose_json, not {fmt}")
        options = FileOptions.from_fields(request.app, {**fields, "task": task})
        keep = Keeping.of(request, fields, name, data)
        audio = await decode(request.app, data, name)
        del data
        done = await transcribe(request.app, audio, options)
        meeting = await keep.save(done)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    headers = {MEETING_HEADER: meeting.id} if meeting is not None else {}
    result = done.result
    usage = {"type": "duration", "seconds": math.ceil(result.duration)}
    translated = {"translations": _whole_translations(done)} if done.languages else {}
    if fmt == "json":
        return web.json_response({"text": result.text, **translated, "usage": usage}, dumps=dumps, headers=headers)
    if fmt == "verbose_json":
        segments = [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": s.avg_logprob,
                "compression_ratio": s.compression_ratio,
                "no_speech_prob": s.no_speech_prob,
                **({"speaker": s.speaker} if result.turns is not None else {}),
                **({"translations": dict(c.translations)} if done.languages else {}),
            }
            for i, (s, c) in enumerate(zip(result.segments, done.captions, strict=True))
        ]
        keys = ("word", "start", "end", "speaker")
        words = [{k: w[k] for k in keys if k in w} for s in result.segments for w in s.words]
        return web.json_response(
            {
                "task": task,
                "language": result.language,
                "duration": round(result.duration, 3),
                "text": result.text,
                "segments": segments,
                "words": words,
                **translated,
                "usage": usage,
                **_speakers_of(result),
            },
            dumps=dumps,
            headers=headers,
        )
    body = render(done.captions, fmt) if fmt != "text" else result.text + "\n"
    return web.Response(text=body, content_type=MEDIA_TYPES[fmt], charset="utf-8", headers=headers)


def _whole_translations(done: Transcribed) -> dict[str, str]:
    return {language: translated_text(done.captions, language) for language in done.languages}


# -- meeting records ---------------------------------------------------------------------------

MEETING_HEADER = "X-Roomscribe-Meeting"  # the meeting an upload was stored as


@dataclass(frozen=True)
class Keeping:
    """Where an upload is stored once transcribed: the tenant and meeting (`meeting_id`,
    `user_id` and `tenant_id` fields; checked before the file is decoded), and its audio
    where the server keeps audio. Nowhere on a server without records."""

    records: MeetingRecords | None
    tenant: str = ""
    meeting_id: str | None = None
    user_id: str | None = None
    name: str = ""
    audio: tuple[bytes, str] | None = None

    @classmethod
    def of(cls, request: web.Request, fields: Mapping[str, str], name: str, data: bytes) -> Keeping:
        kept = records(request.app)
        if kept is None:
            return cls(None)
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        return cls(
            kept,
            tenant_of(request, fields.get("tenant_id")),
            meeting_id_field(fields.get("meeting_id")),
            (fields.get("user_id") or "").strip()[:128] or None,
            name,
            (data, content_type) if kept.keep_audio else None,
        )

    async def save(self, done: Transcribed) -> Meeting | None:
        if self.records is None:
            return None
        try:
            return await self._save(done)
        except StoreError as exc:
            raise RequestError(503, f"the transcript could not be stored: {exc}") from None

    @staticmethod
    def stored_captions(done: Transcribed, user_id: str | None = None) -> list[Caption]:
        """A transcribed file's captions as its meeting keeps them: a file's voices are its
        speakers (S1, S2, ...), an undiarized file is the uploader's (`user_id`); each with
        its segment's words (so a stored segment has its words' times and confidence)."""
        from ..engine import Word

        segments = done.result.segments
        if len(segments) != len(done.captions):  # one caption per segment; never otherwise
            segments = [None] * len(done.captions)
        return [
            dataclasses.replace(
                caption,
                participant="" if caption.speaker else user_id or "",
                words=[
                    Word(w["word"], float(w["start"]), float(w["end"]), float(w.get("probability", 1.0)))
                    for w in (getattr(segment, "words", None) or [])
                ],
            )
            for caption, segment in zip(done.captions, segments, strict=True)
        ]

    async def _save(self, done: Transcribed) -> Meeting:
        return await self.records.save_file(
            self.tenant,
            self.meeting_id,
            self.stored_captions(done, self.user_id),
            source="upload",
            title=self.name,
            user_id=self.user_id,
            language=done.result.language,
            audio=self.audio,
        )


def _with_meeting(document: dict, meeting: Meeting | None) -> dict:
    return {"meeting_id": meeting.id, **document} if meeting is not None else document
