"""Control messages that frontends send the caption bot on the `roomscribe.control` topic.

Each is one JSON object in a data packet (reliable) on that topic:

    {"type": "pause"}                                      # captions off for the room
    {"type": "resume"}                                     # captions on again
    {"type": "set_language", "participant": "minji", "language": "ko"}
    {"type": "set_language", "participant": "minji", "language": null}   # detect again

A message that does not parse is a `ControlError`; the bot logs it and carries on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .options import OptionsError, parse_language

CONTROL_TOPIC = "roomscribe.control"
MAX_CONTROL_BYTES = 4096


class ControlError(ValueError):
    """A control message that cannot be acted on."""


@dataclass(frozen=True)
class Pause:
    pass


@dataclass(frozen=True)
class Resume:
    pass


@dataclass(frozen=True)
class SetLanguage:
    participant: str
    language: str | None  # None: detect


ControlMessage = Pause | Resume | SetLanguage


def parse_control(payload: bytes) -> ControlMessage:
    if len(payload) > MAX_CONTROL_BYTES:
        raise ControlError(f"control message of {len(payload)} bytes (at most {MAX_CONTROL_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"control message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ControlError("control message must be a JSON object")
    kind = data.get("type")
    if kind == "pause":
        return Pause()
    if kind == "resume":
        return Resume()
    if kind == "set_language":
        participant = data.get("participant")
        if not isinstance(participant, str) or not participant:
            raise ControlError("set_language needs a participant identity")
        if "language" not in data:
            raise ControlError("set_language needs a language (null to detect)")
        try:
            return SetLanguage(participant, parse_language(data["language"]))
        except OptionsError as exc:
            raise ControlError(str(exc)) from None
    raise ControlError(f"unknown control message type {kind!r} (pause, resume, set_language)")
