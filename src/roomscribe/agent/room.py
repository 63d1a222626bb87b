"""Room logic: every remote audio track captioned by its own speaker, whatever the transport.

The room is seen through a narrow interface (participants as identity + attributes +
metadata, tracks as sids with async sources of 16 kHz mono audio), so this module has no
LiveKit connection in it and unit tests drive it with a fake room. `livekit_room.py` binds
it to a real `rtc.Room`.

Each track's audio is pumped into a speaker made by the injected `speaker_factory` (a
`session.LiveSpeaker` on the shared model in the worker, a scripted one in tests). Its
pipeline is the room's interim throttle, then the room's `CaptionPublisher`. A muted track
or a paused room pauses the speaker (the sentence in progress becomes final; nothing is
decoded); a track that goes away finishes its speaker, so its last final still goes out.

A speaker's language, first match wins: a `set_language` control message; the
participant attribute `roomscribe.language` (or `language`); `{"language": ...}` in
the participant's metadata; the job's `participant_languages`; the job's room default;
detection.

Translation: the room's target languages (the job's `translate`, then `set_translation`
control messages) are shared by every track's `TranslationStage`; each final is translated
into each of them but its own language, on the process's one `TranslationService`.
`on_translation` is told the room's translation state ("off", "on", "failing: ...",
"unavailable: ..."), languages, and a note on languages the model is known to translate badly
into, whenever they change.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..session.control import ControlError, Pause, Resume, SetLanguage, SetTranslation, parse_control
from ..session.options import OptionsError, parse_language
from ..session.pipeline import InterimThrottle, Pipeline
from ..session.records import MeetingRecorder
from ..session.translation import TranslationStage, TranslationTargets
from ..translation import TranslationService
from .captions import CaptionPublisher, CaptionSend
from .options import CaptionOptions

logger = logging.getLogger("roomscribe.agent")

LANGUAGE_ATTRIBUTES = ("roomscribe.language", "language")
ATTRIBUTE_DIARIZE = "roomscribe.diarize"  # on a participant: "true" when its microphone hears several people
ROOM_CONTROLS = (Pause, Resume, SetLanguage, SetTranslation)  # the control messages a room acts on
TRANSLATION_DRAIN_SECONDS = 10.0  # the most a closing room waits for translations in flight
_UNSET = object()


@dataclass
class Participant:
    identity: str
    name: str = ""  # the display name, when the participant has one
    attributes: dict[str, str] = field(default_factory=dict)
    metadata: str = ""
    kind: str = "standard"  # LiveKit's participant kind: "sip" for a phone caller, "agent", ...


class TrackSpeaker(Protocol):
    """What the room needs of a track's speaker (`session.LiveSpeaker` is one)."""

    def push(self, audio: Any) -> None: ...
    def set_language(self, language: str | None) -> None: ...
    def set_prompt(self, prompt: str) -> None: ...
    def set_paused(self, paused: bool) -> None: ...
    async def finish(self) -> None: ...
    def close(self) -> None: ...


class SpeakerFactory(Protocol):
    def __call__(
        self,
        *,
        name: str,
        track: str,
        language: str | None,
        pipeline: Pipeline,
        prompt: str = "",
        diarize: bool = False,
    ) -> TrackSpeaker: ...


def declared_language(participant: Participant) -> Any:
    """The language a participant declares in attributes or metadata (`_UNSET` if none)."""
    for key in LANGUAGE_ATTRIBUTES:
        if participant.attributes.get(key):
            return participant.attributes[key]
    if participant.metadata:
        try:
            meta = json.loads(participant.metadata)
        except json.JSONDecodeError:
            return _UNSET  # metadata belongs to the app: not JSON is not an error of ours
        if isinstance(meta, dict) and isinstance(meta.get("language"), str):
            return meta["language"]
    return _UNSET


class CaptionedTrack:
    """One remote audio track: a task pumping its audio into its speaker."""

    def __init__(self, identity: str, sid: str, speaker: TrackSpeaker):
        self.identity = identity
        self.sid = sid
        self.speaker = speaker
        self._pump: asyncio.Task[None] | None = None

    def start(self, audio: AsyncIterable[Any]) -> None:
        self._pump = asyncio.create_task(self._feed(audio), name=f"roomscribe.audio.{self.sid}")

    async def close(self) -> None:
        """No more audio: the last final still goes out, then the speaker is freed."""
        if self._pump is not None:
            self._pump.cancel()
            await asyncio.gather(self._pump, return_exceptions=True)
        try:
            await self.speaker.finish()
        finally:
            self.speaker.close()

    async def _feed(self, audio: AsyncIterable[Any]) -> None:
        try:
            async for chunk in audio:
                self.speaker.push(chunk)
        except Exception as exc:  # noqa: BLE001 - this track's audio is lost; the room's other tracks go on
            logger.error("audio of %s (track %s) failed: %s", self.identity, self.sid, exc, exc_info=exc)


class RoomCaptioner:
    def __init__(
        self,
        options: CaptionOptions,
        speaker_factory: SpeakerFactory,
        send: CaptionSend,
        on_paused: Callable[[bool], None] | None = None,
        capacity: Any = None,
        translation: TranslationService | None = None,
        translation_unavailable: str | None = None,
        on_translation: Callable[[str, tuple[str, ...], str], None] | None = None,
        recorder: MeetingRecorder | None = None,
    ):
        self.options = options
        self.recorder = recorder  # the room session's meeting record, where the worker keeps one
        self.translation = translation
        self._translation_unavailable = translation_unavailable or "no translator in this worker"
        self._on_translation = on_translation
        try:
            self.translation_targets = TranslationTargets(options.translate)
        except ControlError as exc:  # languages this worker's translator cannot give
            logger.error("the room's translation is off: %s", exc)
            self.translation_targets = TranslationTargets()
        self._stages: dict[str, TranslationStage] = {}
        self._remove_listener: Callable[[], None] | None = None
        self._noted = ""  # the translation note last logged
        self._capacity = capacity  # told of every track opened and closed (see capacity.py)
        self._speaker_factory = speaker_factory
        self.publisher = CaptionPublisher(send)
        self._on_paused = on_paused
        self._tracks: dict[str, CaptionedTrack] = {}
        self._participants: dict[str, Participant] = {}
        self._language_overrides: dict[str, str | None] = {}
        self._muted: set[str] = set()
        self._closing: dict[str, asyncio.Task[None]] = {}
        self.paused = False

    @property
    def tracks(self) -> dict[str, CaptionedTrack]:
        return dict(self._tracks)

    # -- participants and tracks ------------------------------------------------------
    def language_of(self, identity: str) -> str | None:
        if identity in self._language_overrides:
            return self._language_overrides[identity]
        participant = self._participants.get(identity)
        declared = declared_language(participant) if participant else _UNSET
        if declared is not _UNSET:
            try:
                return parse_language(declared, f"language of {identity!r}")
            except OptionsError as exc:
                logger.warning("ignoring %s", exc)
        if identity in self.options.participant_languages:
            return self.options.participant_languages[identity]
        return self.options.language

    def diarized(self, participant: Participant) -> bool:
        """Whether a participant's tracks carry several voices: a SIP caller (often a meeting
        room's phone), `roomscribe.diarize` = `true` in its attributes, or the job's list."""
        if participant.kind == "sip" or participant.attributes.get(ATTRIBUTE_DIARIZE, "").lower() == "true":
            return True
        listed = self.options.diarize
        return listed is True or (not isinstance(listed, bool) and participant.identity in listed)

    def add_track(
        self, participant: Participant, track_sid: str, audio: AsyncIterable[Any], *, muted: bool = False
    ) -> None:
        """Caption a track; `audio` yields its 16 kHz mono float32 chunks."""
        if track_sid in self._tracks:
            return
        identity = participant.identity
        self._participants[identity] = participant
        if muted:
            self._muted.add(track_sid)
        language = self.language_of(identity)
        stages: list = [InterimThrottle(self.options.interim_interval)]
        if self.translation is not None:
            # A backend that hears captions gets their audio from the track's speaker (made below).
            stage = TranslationStage(
                self.translation, self.translation_targets, self.glossary, audio_of=lambda c: speaker.caption_audio(c)
            )
            self._stages[track_sid] = stage
            stages.append(stage)
        # Stored before it is published: a final the room has seen is in the meeting's record.
        stored = [self.recorder.sink(self.recorder.offset_of(time.time()))] if self.recorder else []
        pipeline = Pipeline(stages, [*stored, self.publisher.publish])
        diarize = self.diarized(participant)
        speaker = self._speaker_factory(
            name=identity,
            track=track_sid,
            language=language,
            pipeline=pipeline,
            prompt=self.prompt(),
            diarize=diarize,
        )
        if not self._should_run(track_sid):
            speaker.set_paused(True)
        track = self._tracks[track_sid] = CaptionedTrack(identity, track_sid, speaker)
        if self._capacity is not None:
            self._capacity.track_opened()
        track.start(audio)
        self._refresh_prompts()
        logger.info(
            "captioning %s (track %s, language %s%s)",
            identity,
            track_sid,
            language or "detected",
            ", several voices" if diarize else "",
        )

    def remove_track(self, track_sid: str) -> asyncio.Task[None] | None:
        """Stop taking the track's audio; its last final is still published. Returns the closing task."""
        track = self._tracks.pop(track_sid, None)
        self._muted.discard(track_sid)
        if track is None:
            return self._closing.get(track_sid)
        task = asyncio.create_task(track.close(), name=f"roomscribe.close.{track_sid}")
        self._closing[track_sid] = task

        def closed(_: asyncio.Task) -> None:
            self._closing.pop(track_sid, None)
            self._stages.pop(track_sid, None)
            self.publisher.forget_track(track_sid)
            if self._capacity is not None:
                self._capacity.track_closed()

        task.add_done_callback(closed)
        return task

    def remove_participant(self, identity: str) -> list[asyncio.Task[None]]:
        tasks = [self.remove_track(sid) for sid, t in list(self._tracks.items()) if t.identity == identity]
        self._participants.pop(identity, None)
        self._refresh_prompts()
        return [t for t in tasks if t is not None]

    def update_participant(self, participant: Participant) -> None:
        """A participant joined, or their attributes or metadata changed (their language, or
        whether their microphone hears several people, may have)."""
        self._participants[participant.identity] = participant
        self._apply_language(participant.identity)
        diarize = self.diarized(participant)
        for track in self._tracks.values():
            if track.identity == participant.identity:
                track.speaker.set_diarize(diarize)
        self._refresh_prompts()

    # -- what the recogniser is told to expect ------------------------------------------
    def prompt(self) -> str:
        """The room's prompt and, by default, the names of the people in it: the names said
        in a meeting are the words captions most often get wrong."""
        names = [p.name or p.identity for p in self._participants.values()]
        return self.options.prompt_with(list(dict.fromkeys(n.strip() for n in names if n.strip())))

    def glossary(self) -> tuple[str, ...]:
        """Names a translation keeps as written: the room's participants'."""
        names = [p.name or p.identity for p in self._participants.values()]
        return tuple(dict.fromkeys(n.strip() for n in names if n.strip()))

    # -- translation -------------------------------------------------------------------
    def start_translation(self) -> None:
        """Announce the room's translation state (call on the room's loop, once it runs)."""
        if self.translation is not None and self._remove_listener is None:
            self._remove_listener = self.translation.add_state_listener(lambda *_: self._announce_translation())
        if self.translation_targets and self.translation is None:
            logger.error("the room asks for translation, which is off: %s", self._translation_unavailable)
        self._announce_translation()

    def translation_state(self) -> str:
        if not self.translation_targets:
            return "off"
        if self.translation is None:
            return f"unavailable: {self._translation_unavailable}"
        if self.translation.state == "failing":
            return f"failing: {self.translation.last_error}"
        return "on"

    def translation_note(self) -> str:
        """What the room should know about its languages: those the model translates badly into."""
        if self.translation is None:
            return ""
        weak = self.translation.translator.weak_targets
        return "; ".join(weak[t] for t in self.translation_targets.languages if t in weak)

    def set_translation(self, languages: tuple[str, ...]) -> None:
        """The room's translation languages; ones the translator cannot give are refused
        (logged), and the languages stay as they were."""
        try:
            self.translation_targets.set(languages)
        except ControlError as exc:
            logger.warning("ignoring set_translation: %s", exc)
            return
        self._announce_translation()

    def _announce_translation(self) -> None:
        if self.translation is not None and self.translation_targets:
            self.translation.prepare()
        note = self.translation_note()
        if note and note != self._noted:
            logger.warning("%s", note)
        self._noted = note
        if self._on_translation is not None:
            self._on_translation(self.translation_state(), self.translation_targets.languages, note)

    def _refresh_prompts(self) -> None:
        prompt = self.prompt()
        for track in self._tracks.values():
            track.speaker.set_prompt(prompt)

    def set_muted(self, track_sid: str, muted: bool) -> None:
        (self._muted.add if muted else self._muted.discard)(track_sid)
        track = self._tracks.get(track_sid)
        if track is not None:
            track.speaker.set_paused(not self._should_run(track_sid))

    # -- control from frontends ------------------------------------------------------
    def handle_control(self, sender: str | None, payload: bytes) -> None:
        """Act on a control message; a bad one is logged and ignored."""
        who = sender or "the server"
        try:
            message = parse_control(payload, accepted=ROOM_CONTROLS)
        except ControlError as exc:
            logger.warning("ignoring control message from %s: %s", who, exc)
            return
        if isinstance(message, SetLanguage) and message.participant is None:
            logger.warning("ignoring control message from %s: set_language in a room needs a participant", who)
            return
        logger.info("control from %s: %s", who, message)
        if isinstance(message, Pause | Resume):
            self.set_paused(isinstance(message, Pause))
        elif isinstance(message, SetLanguage):
            self._language_overrides[message.participant] = message.language
            self._apply_language(message.participant)
        elif isinstance(message, SetTranslation):
            self.set_translation(message.languages)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        for sid, track in self._tracks.items():
            track.speaker.set_paused(not self._should_run(sid))
        if self._on_paused is not None:
            self._on_paused(paused)

    async def aclose(self) -> None:
        """Finish every track (last finals included) and send what is queued."""
        tasks = [t for t in (self.remove_track(sid) for sid in list(self._tracks)) if t is not None]
        tasks += list(self._closing.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self.translation is not None:
            await self.translation.drain(TRANSLATION_DRAIN_SECONDS)  # the last finals' translations
            for stage in self._stages.values():
                stage.close()
            if self._remove_listener is not None:
                self._remove_listener()
        await self.publisher.aclose()

    # -- internals -------------------------------------------------------------------
    def _should_run(self, track_sid: str) -> bool:
        return not self.paused and track_sid not in self._muted

    def _apply_language(self, identity: str) -> None:
        language = self.language_of(identity)
        for track in self._tracks.values():
            if track.identity == identity:
                track.speaker.set_language(language)
