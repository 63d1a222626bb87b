"""Binds `RoomCaptioner` to a real `rtc.Room` and sends captions the LiveKit way.

A subscribed track's frames become 16 kHz mono float32 through one `FrameConverter` per
track. Captions go out as text streams on `lk.transcription`, one stream per interim or
final update (the same `lk.segment_id` ties them together; the text is what the caption
shows), with the transcribed participant as the sender identity. That identity survives
the SFU only because the bot joins as an agent participant. The deprecated
`rtc.Transcription` packet is also sent while a participant's client is too old for text
streams, by livekit-agents' own rule.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Literal

import numpy as np
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)
from livekit.agents.voice.room_io._output import _legacy_transcription_needed

from livekit import rtc

from ..audio import SAMPLE_RATE, FrameConverter
from ..session import Caption
from .room import Participant, RoomCaptioner

logger = logging.getLogger("roomscribe.agent")

CONTROL_TOPIC = "roomscribe.control"  # frontends' control messages (see `session.control`)

ATTRIBUTE_LANGUAGE = "roomscribe.language"  # ours: the caption's language
ATTRIBUTE_CAPTIONS = "roomscribe.captions"  # on the bot: "on" or "paused"
ATTRIBUTE_LAG = "roomscribe.lag"  # ours: seconds the caption trails the speaker's audio
ATTRIBUTE_SPEAKER = "roomscribe.speaker"  # ours: the voice within a diarized track ("S1", "S2", ...)
ATTRIBUTE_TRANSLATION_OF = "roomscribe.translation_of"  # ours: a translation's source language
ATTRIBUTE_CAPTION_SEGMENT = "roomscribe.caption_segment_id"  # ours: the lk.segment_id a translation translates
ATTRIBUTE_TRANSLATION = "roomscribe.translation"  # on the bot: "off", "on", "failing: <why>", "unavailable: <why>"
ATTRIBUTE_TRANSLATION_LANGUAGES = "roomscribe.translation_languages"  # on the bot: "en,ko"
ATTRIBUTE_TRANSLATION_NOTE = "roomscribe.translation_note"  # on the bot: languages the model is weak in
FRAME_MS = 40  # 4x fewer Python wake-ups per track than the default 10 ms; the VAD steps 32 ms anyway

LegacyMode = Literal["auto", "always", "never"]


class LiveKitCaptionSender:
    def __init__(self, room: rtc.Room, legacy: LegacyMode = "auto"):
        self._room = room
        self._legacy = legacy

    async def __call__(self, caption: Caption) -> None:
        if not self._room.isconnected():
            raise ConnectionError("the room is not connected")
        if caption.translated:
            # Translations go out as their own streams, tied to the caption by track and
            # roomscribe.caption_segment_id; the caption itself was sent already.
            for language in caption.translated:
                await self._send_translation(caption, language)
            return
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_TRACK_ID: caption.track,
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: caption.segment_id,
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",
        }
        if caption.language:
            attributes[ATTRIBUTE_LANGUAGE] = caption.language
        attributes[ATTRIBUTE_LAG] = f"{caption.lag:.2f}"  # the engine's own measure, as every door shows it
        if caption.speaker is not None:
            attributes[ATTRIBUTE_SPEAKER] = caption.speaker
        text = caption.shown
        writer = await self._room.local_participant.stream_text(
            topic=TOPIC_TRANSCRIPTION, sender_identity=caption.participant, attributes=attributes
        )
        await writer.write(text)
        await writer.aclose()
        if self._legacy_needed():
            await self._room.local_participant.publish_transcription(
                rtc.Transcription(
                    participant_identity=caption.participant,
                    track_sid=caption.track,
                    segments=[
                        rtc.TranscriptionSegment(
                            id=caption.segment_id,
                            text=text,
                            final=caption.final,
                            language=caption.language or "",
                            start_time=int(caption.start * 1000),
                            end_time=int(caption.end * 1000),
                        )
                    ],
                )
            )

    async def _send_translation(self, caption: Caption, language: str) -> None:
        # A segment id of its own per language: frontends (components-react's useTranscriptions)
        # keep one entry per lk.segment_id, so a shared id would let a translation replace its
        # caption; a provisional clause and the final translation share theirs and replace in turn.
        attributes = {
            ATTRIBUTE_TRANSCRIPTION_TRACK_ID: caption.track,
            ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: translation_segment_id(caption.segment_id, language),
            ATTRIBUTE_CAPTION_SEGMENT: caption.segment_id,
            ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",  # false: a clause, provisional
            ATTRIBUTE_LANGUAGE: language,
            ATTRIBUTE_TRANSLATION_OF: caption.language or "",
            ATTRIBUTE_LAG: f"{caption.lag:.2f}",
        }
        if caption.speaker is not None:
            attributes[ATTRIBUTE_SPEAKER] = caption.speaker
        writer = await self._room.local_participant.stream_text(
            topic=TOPIC_TRANSCRIPTION, sender_identity=caption.participant, attributes=attributes
        )
        await writer.write(caption.translations[language])
        await writer.aclose()

    def _legacy_needed(self) -> bool:
        if self._legacy == "auto":
            return _legacy_transcription_needed(self._room)
        return self._legacy == "always"


def translation_segment_id(segment_id: str, language: str) -> str:
    """The lk.segment_id of a caption's translation into `language`."""
    return f"{segment_id}-{language}"


def participant_of(participant: rtc.Participant) -> Participant:
    return Participant(
        identity=participant.identity,
        name=participant.name or "",
        attributes=dict(participant.attributes),
        metadata=participant.metadata or "",
        kind="sip" if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP else "standard",
    )


async def track_frames(track: rtc.Track) -> AsyncIterator[rtc.AudioFrame]:
    """A remote audio track's decoded frames, asked for at 16 kHz mono (the SDK resamples them
    in native code, off the event loop; the `FrameConverter` then has only PCM to convert)."""
    stream = rtc.AudioStream.from_track(track=track, sample_rate=SAMPLE_RATE, num_channels=1, frame_size_ms=FRAME_MS)
    try:
        async for event in stream:
            yield event.frame
    finally:
        await stream.aclose()


async def frames_audio(frames: AsyncIterable[rtc.AudioFrame]) -> AsyncIterator[np.ndarray]:
    """One track's frames, whatever their rate and channels, as 16 kHz mono float32."""
    converter = FrameConverter()
    async for frame in frames:
        yield converter.pcm(frame.data, frame.sample_rate, frame.num_channels)


def bind_room(room: rtc.Room, captioner: RoomCaptioner) -> None:
    """Route the room's events into the captioner (before connecting, so no track is missed)."""

    def is_audio(publication: rtc.TrackPublication) -> bool:
        return publication.kind == rtc.TrackKind.KIND_AUDIO

    @room.on("track_subscribed")
    def _subscribed(
        track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        captioner.add_track(
            participant_of(participant), publication.sid, frames_audio(track_frames(track)), muted=publication.muted
        )

    @room.on("track_unsubscribed")
    def _unsubscribed(
        track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        captioner.remove_track(publication.sid)

    @room.on("track_unpublished")
    def _unpublished(publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant) -> None:
        if is_audio(publication):
            captioner.remove_track(publication.sid)

    @room.on("participant_connected")
    def _joined(participant: rtc.RemoteParticipant) -> None:
        captioner.update_participant(participant_of(participant))

    @room.on("participant_disconnected")
    def _left(participant: rtc.RemoteParticipant) -> None:
        captioner.remove_participant(participant.identity)

    @room.on("track_muted")
    def _muted(participant: rtc.Participant, publication: rtc.TrackPublication) -> None:
        if is_audio(publication):
            captioner.set_muted(publication.sid, True)

    @room.on("track_unmuted")
    def _unmuted(participant: rtc.Participant, publication: rtc.TrackPublication) -> None:
        if is_audio(publication):
            captioner.set_muted(publication.sid, False)

    @room.on("participant_attributes_changed")
    def _attributes(changed: dict[str, str], participant: rtc.Participant) -> None:
        if isinstance(participant, rtc.RemoteParticipant):
            captioner.update_participant(participant_of(participant))

    @room.on("participant_metadata_changed")
    def _metadata(participant: rtc.Participant, old: str, new: str) -> None:
        if isinstance(participant, rtc.RemoteParticipant):
            captioner.update_participant(participant_of(participant))

    @room.on("data_received")
    def _data(packet: rtc.DataPacket) -> None:
        if packet.topic == CONTROL_TOPIC:
            sender = packet.participant.identity if packet.participant is not None else None
            captioner.handle_control(sender, packet.data)


def announce_paused(room: rtc.Room) -> Callable[[bool], None]:
    """A `on_paused` callback that shows the caption state in the bot's attributes."""

    def on_paused(paused: bool) -> None:
        _set_attributes(room, {ATTRIBUTE_CAPTIONS: "paused" if paused else "on"})

    return on_paused


def announce_translation(room: rtc.Room) -> Callable[[str, tuple[str, ...], str], None]:
    """An `on_translation` callback: the room's translation state, languages and note in the bot's
    attributes, so a frontend offers those languages and says when translation fails or is rough."""

    def on_translation(state: str, languages: tuple[str, ...], note: str) -> None:
        _set_attributes(
            room,
            {
                ATTRIBUTE_TRANSLATION: state[:200],
                ATTRIBUTE_TRANSLATION_LANGUAGES: ",".join(languages),
                ATTRIBUTE_TRANSLATION_NOTE: note[:300],
            },
        )

    return on_translation


def _set_attributes(room: rtc.Room, attributes: dict[str, str]) -> None:
    if not room.isconnected():
        return
    task = asyncio.ensure_future(room.local_participant.set_attributes(attributes))
    task.add_done_callback(
        lambda t: (
            t.cancelled() or t.exception() is None or logger.warning("could not set %s: %s", attributes, t.exception())
        )
    )
