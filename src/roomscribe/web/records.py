"""The server's meeting records (`session.records.MeetingRecords`), as the doors reach them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

from aiohttp import web

from ..session.records import MeetingRecords
from ..store import StoreUnavailableError, parse_meeting_id
from .responses import RequestError

T = TypeVar("T")

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


async def stored(call: Callable[..., T], *args, **kwargs) -> T:
    """A store call, off the loop; the store being away is a 503 (try again), not a 500."""
    try:
        return await asyncio.to_thread(call, *args, **kwargs)
    except StoreUnavailableError as exc:
        raise RequestError(503, f"the meeting records are unavailable, try again shortly ({exc})") from None
