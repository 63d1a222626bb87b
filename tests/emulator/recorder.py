"""Records every DataPacket that real clients send, as receiving clients see it.

Packets are recorded after the SFU identity rule (``data.apply_sfu_rule``), so
``sender_identity`` is what a frontend would show. Text streams are rebuilt from
``stream_header`` + ``stream_chunk``\\ s + ``stream_trailer`` (or from the header
alone when it carries ``inline_content``), DEFLATE_RAW-decompressed when flagged.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.protocol import models

from .util import Record


@dataclass
class TextStreamRecord(Record):
    room: str
    stream_id: str
    topic: str
    sender_identity: str  # after the SFU rule: what receiving clients see
    from_identity: str  # the participant that really sent it
    attributes: dict[str, str]  # header attributes updated with the trailer's
    text: str
    generated: bool
    header_at: float  # time.monotonic()
    done_at: float | None  # time.monotonic() when the trailer arrived
    mime_type: str = ""
    header_attributes: dict[str, str] = field(default_factory=dict)
    trailer_attributes: dict[str, str] = field(default_factory=dict)
    destination_identities: list[str] = field(default_factory=list)
    _chunks: list[bytes] = field(default_factory=list, repr=False)
    _compressed: bool = field(default=False, repr=False)


@dataclass
class SegmentRecord(Record):
    id: str
    text: str
    final: bool
    start_time: int
    end_time: int
    language: str


@dataclass
class TranscriptionRecord(Record):
    room: str
    from_identity: str
    transcribed_participant_identity: str
    track_id: str
    segments: list[SegmentRecord]
    received_at: float  # time.monotonic()


@dataclass
class UserPacketRecord(Record):
    topic: str
    payload: bytes
    sender: str  # identity, after the SFU rule (always the real sender for user packets)
    at: float  # time.monotonic()
    room: str = ""
    kind: int = models.DataPacket.Kind.RELIABLE
    destination_identities: list[str] = field(default_factory=list)

    def __iter__(self):  # ``topic, payload, sender, at = rec``
        return iter((self.topic, self.payload, self.sender, self.at))


@dataclass
class PacketRecord(Record):
    room: str
    from_identity: str
    kind: int
    packet: models.DataPacket  # after the SFU rule
    forwarded: bool
    at: float


class Recorder:
    def __init__(self) -> None:
        self.packets: list[PacketRecord] = []
        self.text_streams: list[TextStreamRecord] = []  # completed (trailer seen), in order
        self.open_streams: dict[str, TextStreamRecord] = {}  # header seen, no trailer yet
        self.transcriptions: list[TranscriptionRecord] = []
        self.user_packets: list[UserPacketRecord] = []
        self._waiters: set[asyncio.Future] = set()

    # -- intake ----------------------------------------------------------------------------
    def record(self, room: str, from_identity: str, dp: models.DataPacket, kind: int, forwarded: bool) -> None:
        at = time.monotonic()
        self.packets.append(PacketRecord(room, from_identity, kind, dp, forwarded, at))
        which = dp.WhichOneof("value")
        if which == "stream_header":
            h = dp.stream_header
            rec = TextStreamRecord(
                room=room,
                stream_id=h.stream_id,
                topic=h.topic,
                sender_identity=dp.participant_identity,
                from_identity=from_identity,
                attributes=dict(h.attributes),
                text="",
                generated=h.HasField("text_header") and h.text_header.generated,
                header_at=at,
                done_at=None,
                mime_type=h.mime_type,
                header_attributes=dict(h.attributes),
                destination_identities=list(dp.destination_identities),
                _compressed=h.compression == models.DataStream.CompressionType.DEFLATE_RAW,
            )
            if h.inline_content:  # a single-packet stream (send_text): no chunk or trailer follows
                rec._chunks.append(bytes(h.inline_content))
                self._finish(rec, {}, at)
            else:
                self.open_streams[h.stream_id] = rec
        elif which == "stream_chunk":
            rec = self.open_streams.get(dp.stream_chunk.stream_id)
            if rec is not None:
                rec._chunks.append(bytes(dp.stream_chunk.content))
        elif which == "stream_trailer":
            rec = self.open_streams.pop(dp.stream_trailer.stream_id, None)
            if rec is not None:
                self._finish(rec, dict(dp.stream_trailer.attributes), at)
        elif which == "transcription" and forwarded:
            t = dp.transcription
            self.transcriptions.append(
                TranscriptionRecord(
                    room=room,
                    from_identity=from_identity,
                    transcribed_participant_identity=t.transcribed_participant_identity,
                    track_id=t.track_id,
                    segments=[
                        SegmentRecord(s.id, s.text, s.final, s.start_time, s.end_time, s.language) for s in t.segments
                    ],
                    received_at=at,
                )
            )
        elif which == "user":
            self.user_packets.append(
                UserPacketRecord(
                    topic=dp.user.topic,
                    payload=bytes(dp.user.payload),
                    sender=dp.participant_identity,
                    at=at,
                    room=room,
                    kind=kind,
                    destination_identities=list(dp.destination_identities),
                )
            )
        self._wake()

    def _finish(self, rec: TextStreamRecord, trailer_attributes: dict[str, str], at: float) -> None:
        raw = b"".join(rec._chunks)
        if rec._compressed:  # DEFLATE_RAW over the whole content (inline or chunked)
            try:
                raw = zlib.decompress(raw, -15)
            except zlib.error:
                pass
        rec.text = raw.decode("utf-8", "replace")
        rec.trailer_attributes = trailer_attributes
        rec.attributes.update(trailer_attributes)
        rec.done_at = at
        self.text_streams.append(rec)

    def _wake(self) -> None:
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_result(None)

    # -- queries ---------------------------------------------------------------------------
    def streams(
        self,
        topic: str | None = None,
        *,
        room: str | None = None,
        sender_identity: str | None = None,
        **attributes: str,
    ) -> list[TextStreamRecord]:
        """Completed text streams filtered by topic, room, sender and attribute values.

        Attribute keys contain dots, so pass them as a dict: ``streams("lk.transcription",
        **{"lk.transcription_final": "true"})``.
        """
        return [
            r
            for r in self.text_streams
            if (topic is None or r.topic == topic)
            and (room is None or r.room == room)
            and (sender_identity is None or r.sender_identity == sender_identity)
            and all(r.attributes.get(k) == v for k, v in attributes.items())
        ]

    def summary(self) -> str:
        topics: dict[str, int] = {}
        for r in self.text_streams:
            topics[r.topic] = topics.get(r.topic, 0) + 1
        return (
            f"{len(self.packets)} packets, text streams {topics or '{}'} "
            f"({len(self.open_streams)} open), {len(self.transcriptions)} transcriptions, "
            f"{len(self.user_packets)} user packets"
        )

    async def wait_for(self, predicate: Callable[[Recorder], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate(recorder)`` is truthy and return its value.

        Re-evaluated on every new packet (and every 0.25 s). Raises ``TimeoutError``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate(self)
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"recorder.wait_for timed out after {timeout:g}s ({self.summary()})")
            fut = loop.create_future()
            self._waiters.add(fut)
            try:
                await asyncio.wait_for(fut, min(remaining, 0.25))
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(fut)

    def clear(self) -> None:
        self.packets.clear()
        self.text_streams.clear()
        self.open_streams.clear()
        self.transcriptions.clear()
        self.user_packets.clear()
