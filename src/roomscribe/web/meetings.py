"""The meetings API: a tenant's stored meetings, read, exported and deleted.

- `GET /meetings`: newest first, paged (`limit`, `offset`), filtered by `since`/`until`
  (epoch seconds or ISO 8601) and `source`;
- `GET /meetings/{id}`: the meeting, its segments and who spoke (a speakers summary as
  meeting services report it: `total_duration`, `segments_count`, `text_parts`);
- `GET /meetings/{id}/transcript?format=txt|srt|vtt|json|rttm[&language=ko]`;
- `GET /meetings/{id}/audio`: the audio kept with it (`serve --keep-audio`), else 404;
- `DELETE /meetings/{id}`.

Every call is scoped to the caller's tenant (`tenants`): another tenant's meeting is "not
found", whatever its id.
"""

from __future__ import annotations

import math
from datetime import datetime

from aiohttp import web

from ..session import Caption
from ..session.formats import MEDIA_TYPES, render, to_rttm, translated_text
from ..session.options import OptionsError, parse_language
from ..store import Meeting, Segment, Store, parse_meeting_id
from .records import records, stored
from .responses import RequestError, dumps, json_error
from .tenants import tenant_of

MAX_PAGE = 200
EXPORT_FORMATS = ("txt", "srt", "vtt", "json", "rttm")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/meetings", list_meetings)
    app.router.add_get("/meetings/{meeting}", get_meeting)
    app.router.add_get("/meetings/{meeting}/transcript", meeting_transcript)
    app.router.add_get("/meetings/{meeting}/audio", meeting_audio)
    app.router.add_delete("/meetings/{meeting}", delete_meeting)


def speaker_label(segment: Segment) -> str:
    """Who said a segment: the participant, "caller (S2)" for a voice within a participant's
    track, "S2" for a voice in a file."""
    if segment.speaker is None:
        return segment.participant or "unknown"
    return f"{segment.participant} ({segment.speaker})" if segment.participant else segment.speaker


def speakers_summary(segments: list[Segment]) -> dict[str, dict]:
    summary: dict[str, dict] = {}
    for seg in segments:
        entry = summary.setdefault(speaker_label(seg), {"total_duration": 0.0, "segments_count": 0, "text_parts": []})
        entry["total_duration"] = round(entry["total_duration"] + max(0.0, seg.end - seg.start), 3)
        entry["segments_count"] += 1
        entry["text_parts"].append(seg.text)
    return summary


def meeting_language(meeting: Meeting, segments: list[Segment]) -> str | None:
    """The meeting's language: as it was opened with, else the one most of its speech was in."""
    if meeting.language:
        return meeting.language
    spoken: dict[str, float] = {}
    for seg in segments:
        if seg.language:
            spoken[seg.language] = spoken.get(seg.language, 0.0) + max(0.0, seg.end - seg.start)
    return max(spoken, key=spoken.__getitem__) if spoken else None


def meeting_document(meeting: Meeting, segments: list[Segment]) -> dict:
    summary = speakers_summary(segments)
    languages = sorted({lang for seg in segments for lang in seg.translations})
    captions = as_captions(segments)
    doc = {
        **meeting.as_dict(),
        "language": meeting_language(meeting, segments),
        "duration": round(max((s.end for s in segments), default=0.0), 3),
        "transcript": "\n".join(f"{speaker_label(s)}: {s.text}" for s in segments),
        "segments": [{**s.as_dict(), "label": speaker_label(s)} for s in segments],
        "speakers": summary,
        "total_speakers": len(summary),
        "total_segments": len(segments),
    }
    if languages:
        doc["translations"] = {lang: translated_text(captions, lang) for lang in languages}
    return doc


def as_captions(segments: list[Segment], labelled: bool = False) -> list[Caption]:
    """Stored segments as the captions the transcript formats render; `labelled`: a segment
    that names no one is "unknown"'s, as in the document's speakers (so that text, srt, vtt
    and rttm say who spoke for every segment, as the document does)."""
    return [
        Caption(
            participant=s.participant or ("unknown" if labelled and s.speaker is None else ""),
            segment_id=s.segment_id,
            text=s.text,
            final=True,
            start=s.start,
            end=s.end,
            language=s.language,
            speaker=s.speaker,
            track=s.track,
            translations=dict(s.translations),
        )
        for s in segments
    ]


def _store(request: web.Request) -> Store:
    kept = records(request.app)
    if kept is None:
        raise RequestError(501, "this server keeps no meeting records (it runs with records off)")
    return kept.store


def _time(request: web.Request, name: str) -> float | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except (ValueError, OverflowError, OSError):
            seconds = math.nan
    if not math.isfinite(seconds):  # nan, inf and 1e999 compare as no time does
        raise RequestError(400, f"{name} is epoch seconds or an ISO 8601 time, not {value!r}")
    return seconds


def _whole(request: web.Request, name: str, default: int, least: int = 0, most: int | None = None) -> int:
    value = request.query.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise RequestError(400, f"{name} is a whole number, not {value!r}") from None
    if number < least or (most is not None and number > most):
        # A page of 0 would never advance: its next_offset is its own offset.
        raise RequestError(400, f"{name} is a whole number from {least} to {most if most is not None else 'any'}")
    return number


async def _meeting(request: web.Request) -> tuple[Store, str, Meeting]:
    store, tenant = _store(request), tenant_of(request)
    try:
        meeting_id = parse_meeting_id(request.match_info["meeting"])
    except ValueError as exc:  # it could name no meeting: say what an id is
        raise RequestError(400, str(exc)) from None
    meeting = await stored(store.get_meeting, tenant, meeting_id)
    if meeting is None:
        raise RequestError(404, f"no meeting {meeting_id!r}")
    return store, tenant, meeting


async def list_meetings(request: web.Request) -> web.Response:
    try:
        store, tenant = _store(request), tenant_of(request)
        limit, offset = _whole(request, "limit", 50, 1, MAX_PAGE), _whole(request, "offset", 0)
        filters = {
            "since": _time(request, "since"),
            "until": _time(request, "until"),
            "source": request.query.get("source") or None,
        }
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    meetings = await stored(store.list_meetings, tenant, limit=limit, offset=offset, **filters)
    total = await stored(store.count_meetings, tenant, **filters)
    return web.json_response(
        {
            "tenant": tenant,
            "meetings": [m.as_dict() for m in meetings],
            "total": total,
            "limit": limit,
            "offset": offset,
            "next_offset": offset + len(meetings) if offset + len(meetings) < total else None,
        },
        dumps=dumps,
    )


async def get_meeting(request: web.Request) -> web.Response:
    try:
        store, tenant, meeting = await _meeting(request)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    segments = await stored(store.segments, tenant, meeting.id)
    return web.json_response(meeting_document(meeting, segments), dumps=dumps)


async def meeting_transcript(request: web.Request) -> web.Response:
    try:
        fmt = request.query.get("format") or "txt"
        if fmt not in EXPORT_FORMATS:
            raise RequestError(400, f"format is one of {', '.join(EXPORT_FORMATS)}")
        try:
            language = parse_language(request.query.get("language")) if request.query.get("language") else None
        except OptionsError as exc:
            raise RequestError(400, str(exc)) from None
        store, tenant, meeting = await _meeting(request)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    segments = await stored(store.segments, tenant, meeting.id)
    if language is not None and fmt in ("txt", "srt", "vtt") and language != meeting_language(meeting, segments):
        translated = sorted({lang for seg in segments for lang in seg.translations})
        if language not in translated:
            # Not the spoken text passed off as a translation.
            return json_error(
                404,
                f"meeting {meeting.id!r} has no translation into {language} "
                f"(translated into: {', '.join(translated) or 'none'})",
            )
    captions = as_captions(segments, labelled=True)
    if fmt == "json":
        body = render(captions, "json", meeting_document(meeting, segments))
    elif fmt == "rttm":
        body = to_rttm(captions, recording=meeting.id)
    else:
        body = render(captions, "text" if fmt == "txt" else fmt, speakers=True, language=language)
    return web.Response(
        text=body,
        content_type=MEDIA_TYPES[fmt],
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{meeting.id}.{fmt}"'},
    )


async def delete_meeting(request: web.Request) -> web.Response:
    try:
        store, tenant, meeting = await _meeting(request)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    await stored(store.delete_meeting, tenant, meeting.id)
    return web.json_response({"deleted": meeting.id})


async def meeting_audio(request: web.Request) -> web.Response:
    try:
        store, tenant, meeting = await _meeting(request)
        kept = await stored(store.audio, tenant, meeting.id)
    except RequestError as exc:
        return json_error(exc.status, str(exc))
    if not kept:
        return json_error(404, f"no audio is kept with meeting {meeting.id!r} (the server keeps it with --keep-audio)")
    name, content_type, data = kept[0]
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "audio"
    return web.Response(
        body=data, content_type=content_type, headers={"Content-Disposition": f'attachment; filename="{safe}"'}
    )
