"""File transcription over HTTP: `POST /transcribe` and OpenAI's `POST /v1/audio/transcriptions`
and `/v1/audio/translations` (`task=translate`: Whisper's own translation into English).

Files take the shared model between live streams' calls (the model lock is held per
window), one file at a time by default with a short queue; a full queue is a 503.
`/transcribe?progress=true` (or `Accept: application/x-ndjson`) streams progress lines
before the result, for long files.
"""

from __future__ import annotations

import asyncio
import math
import time

from aiohttp import MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from ..audio import SAMPLE_RATE, AudioFileError, TooLongError, UnsupportedFormatError, load_audio
from ..diarization.extras import DiarizationUnavailableError, check_hints, require_packages
from ..engine import OfflineTranscript
from ..engine.clusters import SpeakerHints
from ..session.file_jobs import QueueFull
from ..session.formats import MEDIA_TYPES, render, segment_captions, transcript_document
from ..session.options import OptionsError, parse_language, parse_speaker_hints, parse_task
from .keys import CONFIG_KEY, FILES_KEY
from .responses import RequestError, dumps, json_error

CHUNK = 256 * 1024
MAX_FIELD_BYTES = 4096
OPENAI_FORMATS = ("json", "verbose_json", "text", "srt", "vtt")
PROGRESS_EVERY = 0.5  # seconds between progress lines


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
                fields[part.name] = value.decode("utf-8", "replace")
        if data is None:
            raise RequestError(400, "no file: send the audio in a multipart field named 'file'")
        return data, name, fields
    if kind.startswith(("audio/", "video/")) or kind == "application/octet-stream":
        return await _read_limited(request.content, max_bytes), "upload", dict(request.query)
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


async def _decode(request: web.Request, data: bytes, name: str):
    config = request.app[CONFIG_KEY]
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


async def _run(
    request: web.Request, audio, language, prompt, progress=None, task="transcribe", speakers=None
) -> OfflineTranscript:
    try:
        return await request.app[FILES_KEY].run(audio, language, prompt, progress, task, speakers)
    except QueueFull as exc:
        raise RequestError(503, str(exc)) from None


def document(result: OfflineTranscript) -> dict:
    return transcript_document(result)


def _speakers_of(result: OfflineTranscript) -> dict:
    doc = transcript_document(result)
    return {k: doc[k] for k in ("speakers", "total_speakers") if k in doc}


async def transcribe_upload(request: web.Request) -> web.StreamResponse:
    """Our own file endpoint: segments, words, language, processing_time."""
    config = request.app[CONFIG_KEY]
    try:
        data, name, fields = await read_upload(request, int(config.max_upload_mb * 1024**2))
        fields = {**request.query, **fields}
        language, task, speakers = _language(fields), _task(fields), _speakers(fields, config.diarizer)
        audio = await _decode(request, data, name)
        del data
        if fields.get("progress", "").lower() in ("1", "true", "yes") or "application/x-ndjson" in request.headers.get(
            "Accept", ""
        ):
            return await _with_progress(request, audio, language, fields.get("prompt"), task, speakers)
        result = await _run(request, audio, language, fields.get("prompt"), task=task, speakers=speakers)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    return web.json_response(document(result), dumps=dumps)


async def _with_progress(request: web.Request, audio, language, prompt, task, speakers) -> web.StreamResponse:
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
    job = asyncio.ensure_future(_run(request, audio, language, prompt, progress, task, speakers))
    try:
        while not job.done():
            getter = asyncio.ensure_future(lines.get())
            await asyncio.wait({job, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                await response.write((dumps(getter.result()) + "\n").encode())
            else:
                getter.cancel()
        try:
            out = {"type": "result", **document(job.result())}
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
        fmt = fields.get("response_format", "json")
        if fmt not in OPENAI_FORMATS:
            raise RequestError(400, f"response_format is one of {', '.join(OPENAI_FORMATS)}")
        language, speakers = _language(fields), _speakers(fields, config.diarizer)
        audio = await _decode(request, data, name)
        del data
        result = await _run(request, audio, language, fields.get("prompt"), task=task, speakers=speakers)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    usage = {"type": "duration", "seconds": math.ceil(result.duration)}
    if fmt == "json":
        return web.json_response({"text": result.text, "usage": usage}, dumps=dumps)
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
            }
            for i, s in enumerate(result.segments)
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
                "usage": usage,
                **_speakers_of(result),
            },
            dumps=dumps,
        )
    body = render(segment_captions(result.segments), fmt) if fmt != "text" else result.text + "\n"
    return web.Response(text=body, content_type=MEDIA_TYPES[fmt], charset="utf-8")
