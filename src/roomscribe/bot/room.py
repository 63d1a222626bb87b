"""Room logic: one `TrackCaptioner` per remote audio track, whatever the transport.

The room is seen through a narrow interface (participants as identity + attributes +
metadata, tracks as sids with async frame sources), so this module has no LiveKit
connection in it and unit tests drive it with a fake room. `livekit_room.py` binds it
to a real `rtc.Room`.

A speaker's language, first match wins: a `set_language` control message; the
participant attribute `roomscribe.language` (or `language`); `{"language": ...}` in
the participant's metadata; the job's `participant_languages`; the job's room default;
detection.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field
from typing import Any

from .captions import Caption, CaptionPublisher, CaptionSend
from .control import ControlError, Pause, Resume, SetLanguage, parse_control
from .options import CaptionOptions, OptionsError, parse_language
from .track import OpenStream, TrackCaptioner

logger = logging.getLogger("roomscribe.bot")

LANGUAGE_ATTRIBUTES = ("roomscribe.language", "language")
_UNSET = object()


@dataclass
class Speaker:
    identity: str
    attributes: dict[str, str] = field(default_factory=dict)
    metadata: str = ""


def declared_language(speaker: Speaker) -> Any:
    """The language a participant declares in attributes or metadata (`_UNSET` if none)."""
    for key in LANGUAGE_ATTRIBUTES:
        if speaker.attributes.get(key):
            return speaker.attributes[key]
    if speaker.metadata:
        try:
            meta = json.loads(speaker.metadata)
        except json.JSONDecodeError:
            return _UNSET  # metadata belongs to the app: not JSON is not an error of ours
        if isinstance(meta, dict) and isinstance(meta.get("language"), str):
            return meta["language"]
    return _UNSET


class RoomCaptioner:
    def __init__(self, options: CaptionOptions, open_stream: Callable[[str | None, CaptionOptions], Any],
                 send: CaptionSend, on_paused: Callable[[bool], None] | None = None, capacity: Any = None):
        self.options = options
        self._capacity = capacity  # told of every track opened and closed (see capacity.py)
        self._open_stream = open_stream
        self.publisher = CaptionPublisher(send)
        self._on_paused = on_paused
        self._tracks: dict[str, TrackCaptioner] = {}
        self._speakers: dict[str, Speaker] = {}
        self._language_overrides: dict[str, str | None] = {}
        self._muted: set[str] = set()
        self._closing: dict[str, asyncio.Task[None]] = {}
        self.paused = False

    @property
    def tracks(self) -> dict[str, TrackCaptioner]:
        return dict(self._tracks)

    # -- speakers and tracks ----------------------------------------------------------
    def language_of(self, identity: str) -> str | None:
        if identity in self._language_overrides:
            return self._language_overrides[identity]
        speaker = self._speakers.get(identity)
        declared = declared_language(speaker) if speaker else _UNSET
        if declared is not _UNSET:
            try:
                return parse_language(declared, f"language of {identity!r}")
            except OptionsError as exc:
                logger.warning("ignoring %s", exc)
        if identity in self.options.participant_languages:
            return self.options.participant_languages[identity]
        return self.options.language

    def add_track(self, speaker: Speaker, track_sid: str, frames: AsyncIterable[Any], *, muted: bool = False) -> None:
        if track_sid in self._tracks:
            return
        self._speakers[speaker.identity] = speaker
        if muted:
            self._muted.add(track_sid)
        open_stream: OpenStream = lambda language: self._open_stream(language, self.options)  # noqa: E731
        captioner = TrackCaptioner(identity=speaker.identity, track_sid=track_sid, frames=frames,
                                   open_stream=open_stream, publish=self._publish,
                                   language=self.language_of(speaker.identity), active=self._should_run(track_sid))
        self._tracks[track_sid] = captioner
        if self._capacity is not None:
            self._capacity.track_opened()
        captioner.start()
        logger.info("captioning %s (track %s, language %s)", speaker.identity, track_sid,
                    captioner.language or "detected")

    def remove_track(self, track_sid: str) -> asyncio.Task[None] | None:
        """Stop taking the track's audio; its last final is still published. Returns the closing task."""
        captioner = self._tracks.pop(track_sid, None)
        self._muted.discard(track_sid)
        if captioner is None:
            return self._closing.get(track_sid)
        task = asyncio.create_task(captioner.close(), name=f"roomscribe.close.{track_sid}")
        self._closing[track_sid] = task

        def closed(_: asyncio.Task) -> None:
            self._closing.pop(track_sid, None)
            if self._capacity is not None:
                self._capacity.track_closed()

        task.add_done_callback(closed)
        return task

    def remove_participant(self, identity: str) -> list[asyncio.Task[None]]:
        tasks = [self.remove_track(sid) for sid, c in list(self._tracks.items()) if c.identity == identity]
        self._speakers.pop(identity, None)
        return [t for t in tasks if t is not None]

    def update_speaker(self, speaker: Speaker) -> None:
        """A participant's attributes or metadata changed (their language may have)."""
        self._speakers[speaker.identity] = speaker
        self._apply_language(speaker.identity)

    def set_muted(self, track_sid: str, muted: bool) -> None:
        (self._muted.add if muted else self._muted.discard)(track_sid)
        captioner = self._tracks.get(track_sid)
        if captioner is not None:
            captioner.set_active(self._should_run(track_sid))

    # -- control from frontends ------------------------------------------------------
    def handle_control(self, sender: str | None, payload: bytes) -> None:
        """Act on a control message; a bad one is logged and ignored."""
        try:
            message = parse_control(payload)
        except ControlError as exc:
            logger.warning("ignoring control message from %s: %s", sender or "the server", exc)
            return
        logger.info("control from %s: %s", sender or "the server", message)
        if isinstance(message, Pause | Resume):
            self.set_paused(isinstance(message, Pause))
        elif isinstance(message, SetLanguage):
            self._language_overrides[message.participant] = message.language
            self._apply_language(message.participant)

    def set_paused(self, paused: bool) -> None:
        if paused == self.paused:
            return
        self.paused = paused
        for sid, captioner in self._tracks.items():
            captioner.set_active(self._should_run(sid))
        if self._on_paused is not None:
            self._on_paused(paused)

    async def aclose(self) -> None:
        """Finish every track (last finals included) and send what is queued."""
        tasks = [t for t in (self.remove_track(sid) for sid in list(self._tracks)) if t is not None]
        tasks += list(self._closing.values())
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.publisher.aclose()

    # -- internals -------------------------------------------------------------------
    def _should_run(self, track_sid: str) -> bool:
        return not self.paused and track_sid not in self._muted

    def _apply_language(self, identity: str) -> None:
        language = self.language_of(identity)
        for captioner in self._tracks.values():
            if captioner.identity == identity:
                captioner.set_language(language)

    def _publish(self, caption: Caption) -> None:
        if caption.final or self.options.interims_per_second > 0:
            self.publisher.publish(caption)
