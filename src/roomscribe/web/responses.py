"""What every route answers with: JSON in one compact form, errors in OpenAI's shape."""

from __future__ import annotations

import json

from aiohttp import web


class RequestError(Exception):
    """A client's mistake (or a full queue), answered with `status` and the message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def json_error(status: int, message: str, **extra) -> web.Response:
    """Errors in the shape OpenAI clients read: {"error": {"message", "type", "code"}}."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "code": status, **extra}}
    return web.json_response(body, status=status)
