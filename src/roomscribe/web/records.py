"""The server's meeting records (`session.records.MeetingRecords`), as the doors reach them."""

from __future__ import annotations

from aiohttp import web

from ..session.records import MeetingRecords
from ..store import parse_meeting_id
from .responses import RequestError

RECORDS_KEY = web.AppKey("records", MeetingRecords)


def records(app: web.Application) -> MeetingRecords | None:
    """The app's records; None on a server that keeps none (`--no-records`)."""
    return app.get(RECORDS_KEY)


def meeting_id_field(value: str | None) -> str | None:
    """A client's `meeting_id` (None when not given); a 400 when it is malformed."""
    if not value:
        return None
    try:
        return parse_meeting_id(value)
    except ValueError as exc:
        raise RequestError(400, str(exc)) from None
