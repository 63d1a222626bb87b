"""Caption options for one room: defaults from the environment, overridden by job metadata.

Job metadata (set on the dispatch or in a token's room configuration) is JSON:

    {"language": "en",                      # room default; omit or "auto" to detect
     "participant_languages": {"minji": "ko"},
     "policy": "localagreement",            # or "alignatt"
     "interims_per_second": 4,              # 0 turns interim captions off
     "diarize": ["front-desk"],             # tracks with several voices: identities, or "all"
     "translate": ["en", "ko"],             # captions translated into these (each but its own)
     "tenant": "acme",                      # whose meeting records the room is kept in
     "record": true}                        # keep the room as a meeting (false: captions only)

SIP participants, and participants with the attribute `roomscribe.diarize` = `true`, are
diarized whatever the metadata says: their captions carry `roomscribe.speaker` (S1, S2, ...).

Anything else in the metadata is ignored; a wrong value is an `OptionsError` naming it.
Languages and policies are read by `session.options`, as on every other door.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

from ..session.control import ControlError, parse_translation_languages
from ..session.options import MAX_PROMPT_CHARACTERS, OptionsError, parse_language, parse_policy, parse_prompt
from ..store import parse_tenant


@dataclass(frozen=True)
class CaptionOptions:
    language: str | None = None  # room default; None detects per speaker
    participant_languages: dict[str, str | None] = field(default_factory=dict)
    policy: str = "localagreement"
    interims_per_second: float = 4.0
    prompt: str = ""  # names and words to expect in this room
    participant_names: bool = True  # the room's participants' names join every speaker's prompt
    diarize: frozenset[str] | bool = frozenset()  # identities whose tracks carry several voices; True: all
    translate: tuple[str, ...] = ()  # languages every caption is translated into (but its own)
    tenant: str = "local"  # the tenant whose meetings the room's record belongs to
    record: bool = True  # keep the room session as a meeting in the store

    def prompt_with(self, names: list[str]) -> str:
        """The room's prompt followed by participants' names, as many as fit."""
        prompt = self.prompt
        for name in names if self.participant_names else []:
            longer = f"{prompt}, {name}" if prompt else name
            if len(longer) > MAX_PROMPT_CHARACTERS:
                break
            prompt = longer
        return prompt

    @property
    def interim_interval(self) -> float:
        """Least seconds between two interim captions of one speaker (inf: no interims)."""
        return 1.0 / self.interims_per_second if self.interims_per_second > 0 else float("inf")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> CaptionOptions:
        env = os.environ if environ is None else environ
        raw = {
            "language": env.get("ROOMSCRIBE_LANGUAGE"),
            "policy": env.get("ROOMSCRIBE_POLICY"),
            "interims_per_second": env.get("ROOMSCRIBE_INTERIMS_PER_SECOND"),
            "prompt": env.get("ROOMSCRIBE_PROMPT"),
            "translate": env.get("ROOMSCRIBE_TRANSLATE"),
            "tenant": env.get("ROOMSCRIBE_TENANT"),
        }
        if env.get("ROOMSCRIBE_RECORDS"):
            raw["record"] = env["ROOMSCRIBE_RECORDS"].strip().lower() not in ("off", "0", "false", "no")
        return cls().updated({k: v for k, v in raw.items() if v is not None})

    def with_metadata(self, metadata: str | None) -> CaptionOptions:
        """These options overridden by a job's JSON metadata (empty metadata changes nothing)."""
        if not metadata or not metadata.strip():
            return self
        try:
            data = json.loads(metadata)
        except json.JSONDecodeError as exc:
            raise OptionsError(f"job metadata is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise OptionsError("job metadata must be a JSON object")
        return self.updated(data)

    def updated(self, data: dict) -> CaptionOptions:
        changes: dict = {}
        if "language" in data:
            changes["language"] = parse_language(data["language"], "language")
        if "participant_languages" in data:
            langs = data["participant_languages"]
            if not isinstance(langs, dict):
                raise OptionsError("participant_languages must map identities to language codes")
            changes["participant_languages"] = {
                str(identity): parse_language(lang, f"language of {identity!r}") for identity, lang in langs.items()
            }
        if "policy" in data:
            changes["policy"] = parse_policy(data["policy"])
        if "interims_per_second" in data:
            try:
                rate = float(data["interims_per_second"])
            except (TypeError, ValueError):
                given = data["interims_per_second"]
                raise OptionsError(f"interims_per_second must be a number, not {given!r}") from None
            if not 0 <= rate <= 50:
                raise OptionsError(f"interims_per_second must be between 0 and 50, not {rate}")
            changes["interims_per_second"] = rate
        if "prompt" in data:
            changes["prompt"] = parse_prompt(data["prompt"])
        if "participant_names" in data:
            if not isinstance(data["participant_names"], bool):
                raise OptionsError(f"participant_names must be true or false, not {data['participant_names']!r}")
            changes["participant_names"] = data["participant_names"]
        if "diarize" in data:
            changes["diarize"] = _diarize(data["diarize"])
        if "translate" in data:
            try:
                changes["translate"] = parse_translation_languages(data["translate"], "translate")
            except ControlError as exc:
                raise OptionsError(str(exc)) from None
        if "tenant" in data:
            try:
                changes["tenant"] = parse_tenant(str(data["tenant"]))
            except ValueError as exc:
                raise OptionsError(f"tenant: {exc}") from None
        if "record" in data:
            if not isinstance(data["record"], bool):
                raise OptionsError(f"record must be true or false, not {data['record']!r}")
            changes["record"] = data["record"]
        return replace(self, **changes)


def _diarize(value: object) -> frozenset[str] | bool:
    if value == "all" or value is True:
        return True
    if value is False or value is None:
        return frozenset()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise OptionsError(f'diarize must be a list of participant identities or "all", not {value!r}')
