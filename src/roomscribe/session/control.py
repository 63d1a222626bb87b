"""The one parser of control messages that clients send while captions run.

Each is one JSON object with a `type`; every door accepts the kinds that make sense on it:

    {"type": "pause"}  {"type": "resume"}                 # captions off / on again
    {"type": "set_language", "language": "ko"}             # null or "auto": detect again
    {"type": "set_language", "participant": "minji", "language": "ko"}   # in a room: whose
    {"type": "set_translation", "languages": ["en", "ko"]}   # translate into these ([]: none)
    {"type": "stop"}                                       # no more audio (/asr)
    {"type": "ping", "t": 123}                             # answered with a pong (the page)

A message that cannot be acted on is a `ControlError` naming what is wrong; doors report
it to the sender or log it, and carry on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .options import OptionsError, parse_language

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
    language: str | None  # None: detect
    participant: str | None = None  # whose captions, where one connection speaks for a room


@dataclass(frozen=True)
class SetTranslation:
    languages: tuple[str, ...]  # () switches translation off


@dataclass(frozen=True)
class Stop:
    pass


@dataclass(frozen=True)
class Ping:
    t: object = None  # echoed back as it came


ControlMessage = Pause | Resume | SetLanguage | SetTranslation | Stop | Ping
_KINDS: dict[str, type] = {
    "pause": Pause,
    "resume": Resume,
    "set_language": SetLanguage,
    "set_translation": SetTranslation,
    "stop": Stop,
    "ping": Ping,
}
MAX_TRANSLATION_LANGUAGES = 6


def parse_control(payload: bytes | str, accepted: tuple[type, ...] = tuple(_KINDS.values())) -> ControlMessage:
    """One control message; `accepted` lists the kinds the door acts on."""
    if len(payload) > MAX_CONTROL_BYTES:
        raise ControlError(f"control message of {len(payload)} bytes (at most {MAX_CONTROL_BYTES})")
    try:
        data = json.loads(payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ControlError(f"control message is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise ControlError("a control message is a JSON object with a 'type'")
    kind = _KINDS.get(data["type"])
    if kind is None or kind not in accepted:
        names = ", ".join(name for name, k in _KINDS.items() if k in accepted)
        raise ControlError(f"unknown message type {data['type']!r} (known here: {names})")
    if kind is SetLanguage:
        if "language" not in data:
            raise ControlError("set_language needs a language (null or 'auto' to detect)")
        participant = data.get("participant")
        if participant is not None and (not isinstance(participant, str) or not participant):
            raise ControlError("set_language's participant must be a participant identity")
        try:
            return SetLanguage(parse_language(data["language"]), participant)
        except OptionsError as exc:
            raise ControlError(str(exc)) from None
    if kind is SetTranslation:
        return SetTranslation(parse_translation_languages(data.get("languages")))
    if kind is Ping:
        return Ping(data.get("t"))
    return kind()


def parse_translation_languages(value: object, what: str = "languages") -> tuple[str, ...]:
    """Translation targets: a list (or comma-separated string) of languages, each once."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list | tuple):
        raise ControlError(f'{what} must be a list of languages, such as ["en", "ko"]')
    out: list[str] = []
    for item in value:
        try:
            code = parse_language(item, "translation language")
        except OptionsError as exc:
            raise ControlError(str(exc)) from None
        if code is None:
            raise ControlError(f"{what}: a translation language must be a language, not {item!r}")
        if code not in out:
            out.append(code)
    if len(out) > MAX_TRANSLATION_LANGUAGES:
        raise ControlError(f"{what}: at most {MAX_TRANSLATION_LANGUAGES} translation languages, not {len(out)}")
    return tuple(out)
