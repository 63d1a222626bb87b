"""Meeting records from live captions: the recorder sink, and the process's one segment writer.

A `MeetingRecorder` is a meeting as a door sees it (the LiveKit room, the page's session, an
`/asr` connection); its `sink()` goes into each speaker's pipeline, before the sinks that
publish, and turns every final caption into a `Segment` on the meeting's clock. The
`SegmentWriter` stores it at once on the caller's thread while the store answers, so a final
is kept before anyone has seen it. When the store stops answering, captions must go on: the
writer keeps what it could not store in a bounded buffer (dropping the oldest when full) and
a background thread writes it, in order, once the store is back. Nothing here raises to the
pipeline; what goes wrong is logged on "roomscribe.store".
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import OrderedDict, deque

from ..stats import percentile
from ..store import Meeting, Segment, Store, StoreError, StoreUnavailableError, new_meeting_id, open_store
from .caption import Caption

logger = logging.getLogger("roomscribe.store")

RETRY_FIRST = 0.5  # seconds before the first retry; doubled after each failure
RETRY_MOST = 10.0
BATCH = 200  # buffered segments of one meeting written in one transaction
DROP_LOG_EVERY = 1000  # while dropping, one warning per so many segments
RETENTION_CHECK_SECONDS = 3600.0

_Key = tuple[str, str, str]  # (tenant, meeting_id, segment_id)
_Item = tuple[str, str, Segment]  # (tenant, meeting_id, segment)


class SegmentWriter:
    """Stores meetings' segments for the whole process, riding out a store that is away."""

    def __init__(self, store: Store, max_buffer: int = 10000):
        self.store = store
        self.max_buffer = max(1, max_buffer)
        self._cond = threading.Condition()
        # Segments waiting for the store, oldest first; a newer write of a buffered segment
        # takes the older one's place (only the newest of a segment matters).
        self._pending: OrderedDict[_Key, _Item] = OrderedDict()
        self._healthy = True
        self._written = 0
        self._write_seconds: deque[float] = deque(maxlen=20000)  # the last synchronous writes, for status
        self._dropped = 0
        self._dropped_in_outage = 0
        self._last_error: str | None = None
        self._closed = False
        # Meetings the store could not open when their door did: opened by the background
        # thread before any of their segments is written (tenant, meeting_id) -> open fields.
        self._unopened: dict[tuple[str, str], dict] = {}
        self._wake = threading.Event()  # cuts a back-off short (flush, close)
        self._thread = threading.Thread(target=self._retry_loop, name="roomscribe-segment-writer", daemon=True)
        self._thread.start()

    def status(self) -> dict:
        with self._cond:
            return {
                "healthy": self._healthy,
                "buffered": len(self._pending),
                "dropped": self._dropped,
                "written": self._written,
                "last_error": self._last_error,
                "write_ms": _milliseconds(self._write_seconds),
            }

    def open_later(self, tenant: str, meeting_id: str, **fields) -> None:
        """A meeting the store could not open now (it is away): the background thread opens
        it (`Store.open_meeting(tenant, meeting_id, **fields)`) before storing its segments."""
        with self._cond:
            self._unopened[(tenant, meeting_id)] = fields
            self._healthy = False  # its segments wait in the buffer until it is open
            self._cond.notify_all()

    def write(self, tenant: str, meeting_id: str, segment: Segment) -> None:
        """Stores the segment now if the store is healthy and nothing waits, else buffers it
        behind what waits. Never raises."""
        try:
            self._write((tenant, meeting_id, segment))
        except Exception:  # noqa: BLE001 - a caption pipeline must never fail because of its records
            logger.exception("meeting records: segment %s of %s/%s lost", segment.segment_id, tenant, meeting_id)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every buffered segment is stored (trying at once, not after the back-off);
        whether they all were within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._pending:
                self._wake.set()
            while self._pending and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return not self._pending

    def close(self, timeout: float = 5.0) -> None:
        """Tries to store what is buffered, then stops; what is left then is lost, and logged."""
        if not self.flush(timeout):
            logger.error(
                "meeting records: %d buffered segments not stored at shutdown (%s)",
                len(self._pending),
                self._last_error,
            )
        with self._cond:
            self._closed = True
            self._dropped += len(self._pending)
            self._pending.clear()
            self._cond.notify_all()
        self._wake.set()
        self._thread.join(timeout=1.0)

    # -- the caller's side ---------------------------------------------------------------

    def _write(self, item: _Item) -> None:
        tenant, meeting_id, segment = item
        with self._cond:
            if self._closed:
                self._dropped += 1
                logger.warning("meeting records: segment %s written after the writer closed", segment.segment_id)
                return
            if not self._healthy or self._pending:
                self._buffer(item)  # behind what waits, so the order holds
                return
        began = time.perf_counter()
        try:
            self.store.save_segments(tenant, meeting_id, [segment])
        except StoreUnavailableError as exc:
            with self._cond:
                self._unavailable(exc)
                self._buffer(item, newer_wins=True)
            return
        except Exception as exc:  # noqa: BLE001 - refused (a meeting that is not there): retrying would not help
            with self._cond:
                self._refused(exc, tenant, meeting_id, 1)
            return
        with self._cond:
            self._written += 1
            self._write_seconds.append(time.perf_counter() - began)

    def _buffer(self, item: _Item, newer_wins: bool = False) -> None:
        """Called with the lock held. `newer_wins`: a copy of the segment buffered meanwhile
        came later than this one, which is then not kept."""
        key = (item[0], item[1], item[2].segment_id)
        if key in self._pending:
            if not newer_wins:
                self._pending[key] = item
            return
        while len(self._pending) >= self.max_buffer:
            self._pending.popitem(last=False)
            self._dropped += 1
            self._dropped_in_outage += 1
            if self._dropped_in_outage == 1 or self._dropped_in_outage % DROP_LOG_EVERY == 0:
                logger.warning(
                    "meeting records: buffer full (%d segments), dropping the oldest (%d dropped so far)",
                    self.max_buffer,
                    self._dropped,
                )
        self._pending[key] = item
        self._cond.notify_all()

    def _unavailable(self, exc: Exception) -> None:
        """Called with the lock held."""
        if self._healthy:
            logger.warning(
                "meeting records: the store is unavailable (%s); buffering up to %d segments until it is back",
                exc,
                self.max_buffer,
            )
        else:
            logger.debug("meeting records: the store is still unavailable: %s", exc)
        self._healthy = False
        self._last_error = str(exc)

    def _refused(self, exc: Exception, tenant: str, meeting_id: str, count: int) -> None:
        """Called with the lock held."""
        self._dropped += count
        self._last_error = str(exc)
        logger.error("meeting records: %d segment(s) of %s/%s not stored: %s", count, tenant, meeting_id, exc)

    # -- the background side -------------------------------------------------------------

    def _retry_loop(self) -> None:
        delay = RETRY_FIRST
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                batch = self._next_batch()
            tenant, meeting_id = batch[0][0], batch[0][1]
            try:
                opening = self._unopened.get((tenant, meeting_id))
                if opening is not None:
                    self.store.open_meeting(tenant, meeting_id, **opening)
                    with self._cond:
                        self._unopened.pop((tenant, meeting_id), None)
                self.store.save_segments(tenant, meeting_id, [segment for _, _, segment in batch])
            except StoreUnavailableError as exc:
                with self._cond:
                    self._unavailable(exc)
                self._wake.wait(delay)
                self._wake.clear()
                delay = min(delay * 2, RETRY_MOST)
                continue
            except Exception as exc:  # noqa: BLE001 - refused: dropped, so later segments are not held up
                with self._cond:
                    self._remove(batch)
                    self._refused(exc, tenant, meeting_id, len(batch))
                    self._cond.notify_all()
                continue
            delay = RETRY_FIRST
            with self._cond:
                self._remove(batch)
                self._written += len(batch)
                if not self._healthy:
                    logger.warning(
                        "meeting records: the store answers again (%d segments still buffered, %d dropped)",
                        len(self._pending),
                        self._dropped_in_outage,
                    )
                    self._healthy = True
                    self._last_error = None
                    self._dropped_in_outage = 0
                self._cond.notify_all()

    def _next_batch(self) -> list[_Item]:
        """The oldest buffered segments that belong to the oldest one's meeting, up to BATCH;
        called with the lock held. They stay buffered until they are stored."""
        batch: list[_Item] = []
        for item in self._pending.values():
            if batch and (item[0], item[1]) != (batch[0][0], batch[0][1]):
                break
            batch.append(item)
            if len(batch) >= BATCH:
                break
        return batch

    def _remove(self, batch: list[_Item]) -> None:
        for item in batch:
            key = (item[0], item[1], item[2].segment_id)
            if self._pending.get(key) is item:  # not if a newer copy took its place meanwhile
                del self._pending[key]


def _milliseconds(seconds: deque[float]) -> dict:
    """How long the stored writes took: p50, p99 and the most, in ms, and how many."""
    values = list(seconds)
    return {
        "count": len(values),
        "p50": round(percentile(values, 50) * 1000, 3) if values else None,
        "p99": round(percentile(values, 99) * 1000, 3) if values else None,
        "max": round(max(values) * 1000, 3) if values else None,
    }


def segment_from_caption(caption: Caption, offset: float = 0.0) -> Segment:
    """A caption as a stored segment, its times moved from the speaker's clock to the meeting's
    (the speaker's clock starts `offset` seconds after the meeting)."""
    words = [
        {
            "word": w.text.strip(),
            "start": round(w.start + offset, 3),
            "end": round(w.end + offset, 3),
            "probability": round(w.probability, 3),
        }
        for w in caption.words
    ]
    confidence = sum(w.probability for w in caption.words) / len(caption.words) if caption.words else None
    return Segment(
        segment_id=caption.segment_id,
        participant=caption.participant,
        start=caption.start + offset,
        end=caption.end + offset,
        text=caption.text,
        speaker=caption.speaker,
        track=caption.track,
        language=caption.language,
        confidence=confidence,
        words=words,
        translations=dict(caption.translations),
        revised=caption.revised,
    )


class MeetingRecorder:
    """One meeting's records: a sink per speaker, all writing through the process's writer."""

    def __init__(self, writer: SegmentWriter, tenant: str, meeting_id: str, *, started_at: float):
        self.writer = writer
        self.tenant = tenant
        self.meeting_id = meeting_id
        self.started_at = started_at  # epoch seconds; a speaker who joins later has an offset from it

    def offset_of(self, joined_at: float) -> float:
        """The offset of a speaker whose clock started at `joined_at` (epoch seconds)."""
        return max(0.0, joined_at - self.started_at)

    def sink(self, participant_offset: float = 0.0) -> RecordSink:
        return RecordSink(self, participant_offset)


class RecordSink:
    """A speaker's final captions into the meeting's records (interims are not kept)."""

    def __init__(self, recorder: MeetingRecorder, offset: float):
        self.recorder = recorder
        self.offset = offset

    def __call__(self, caption: Caption) -> None:
        if not caption.final or not (caption.text.strip() or caption.revised):
            return  # a revised final with no text retracts the segment: the store drops it
        recorder = self.recorder
        recorder.writer.write(recorder.tenant, recorder.meeting_id, segment_from_caption(caption, self.offset))

    def __repr__(self) -> str:
        return f"RecordSink({self.recorder.tenant}/{self.recorder.meeting_id}, offset={self.offset:.3f})"


class MeetingRecords:
    """A process's meeting records: its store, its one writer, and how each door opens a
    meeting. Live doors (a LiveKit room, the page, `/asr` with a `meeting_id`, `/stt/realtime`)
    open a meeting and put its recorder's sink before the sinks that publish; files are stored
    whole once transcribed. A store that is away when a meeting opens does not stop the
    captions: the writer opens the meeting once the store is back, before its segments."""

    def __init__(
        self, store: Store, *, keep_audio: bool = False, retention_days: float | None = None, max_buffer: int = 10000
    ):
        self.store = store
        self.writer = SegmentWriter(store, max_buffer)
        self.keep_audio = keep_audio
        self.retention_days = retention_days
        # Doors of this process on each live meeting: it ends when the last one leaves.
        self._live: dict[tuple[str, str], int] = {}

    async def open_live(
        self,
        tenant: str,
        meeting_id: str | None,
        *,
        source: str,
        title: str | None = None,
        user_id: str | None = None,
        language: str | None = None,
    ) -> MeetingRecorder:
        """A live meeting's recorder (the meeting is made, or joined when it exists; made
        live again when it had ended)."""
        meeting_id = meeting_id or new_meeting_id()
        fields = dict(source=source, title=title, user_id=user_id, language=language)
        self._live[(tenant, meeting_id)] = self._live.get((tenant, meeting_id), 0) + 1
        try:
            meeting = await asyncio.to_thread(self.store.open_meeting, tenant, meeting_id, **fields)
            started_at = meeting.started_at
        except StoreUnavailableError as exc:
            logger.error(
                "meeting %s/%s: the store is unavailable (%s); it is opened once it is back", tenant, meeting_id, exc
            )
            started_at = time.time()
            self.writer.open_later(tenant, meeting_id, started_at=started_at, **fields)
        return MeetingRecorder(self.writer, tenant, meeting_id, started_at=started_at)

    async def end_live(self, recorder: MeetingRecorder) -> None:
        """A door has left the meeting: what is buffered is stored, and the meeting ends when
        no door of this process is on it any more."""
        key = (recorder.tenant, recorder.meeting_id)
        left = self._live.get(key, 1) - 1
        if left > 0:
            self._live[key] = left
            return
        self._live.pop(key, None)
        try:
            await asyncio.to_thread(self.writer.flush, 10.0)
            await asyncio.to_thread(self.store.end_meeting, recorder.tenant, recorder.meeting_id)
        except StoreError as exc:
            logger.warning("meeting %s/%s could not be marked ended: %s", recorder.tenant, recorder.meeting_id, exc)

    async def save_file(
        self,
        tenant: str,
        meeting_id: str | None,
        captions: list[Caption],
        *,
        source: str,
        title: str | None = None,
        user_id: str | None = None,
        language: str | None = None,
        audio: tuple[bytes, str] | None = None,
    ) -> Meeting:
        """A transcribed file as a meeting (its segments replace those of an earlier run of
        the same id); `audio` (data, content type) kept with it where audio is kept. A
        `StoreError` when the store cannot take it."""
        meeting_id = meeting_id or new_meeting_id()
        segments = [segment_from_caption(c) for c in captions if c.text]

        def save() -> Meeting:
            self.store.open_meeting(tenant, meeting_id, source=source, title=title, user_id=user_id, language=language)
            self.store.save_segments(tenant, meeting_id, segments, replace=True)
            if audio is not None and self.keep_audio:
                self.store.save_audio(tenant, meeting_id, title or "audio", audio[0], audio[1])
            self.store.end_meeting(tenant, meeting_id)
            return self.store.get_meeting(tenant, meeting_id)

        return await asyncio.to_thread(save)

    def status(self) -> dict:
        return {**self.store.status(), "writer": self.writer.status(), "keep_audio": self.keep_audio}

    async def expire(self, every: float = RETENTION_CHECK_SECONDS) -> None:
        """Delete meetings past the retention period, now and then every `every` seconds."""
        if self.retention_days is None:
            return
        while True:
            try:
                gone = await asyncio.to_thread(self.store.delete_expired, self.retention_days)
                if gone:
                    logger.info("deleted %d meetings older than %g days", gone, self.retention_days)
            except StoreError as exc:
                logger.warning("retention: %s", exc)
            await asyncio.sleep(every)

    def close(self) -> None:
        self.writer.close()


def records_from_env(environ: dict[str, str] | None = None) -> MeetingRecords | None:
    """The records of a process configured by its environment (the LiveKit agent):
    `ROOMSCRIBE_DATABASE` (PostgreSQL) or SQLite in `ROOMSCRIBE_DATA_DIR` (default: the
    user's data directory); `ROOMSCRIBE_RECORDS=off` keeps none. A `StoreError` when the
    store named cannot be opened."""
    env = os.environ if environ is None else environ
    if (env.get("ROOMSCRIBE_RECORDS") or "").strip().lower() in ("off", "0", "false", "no"):
        return None
    store = open_store(env.get("ROOMSCRIBE_DATABASE") or None, env.get("ROOMSCRIBE_DATA_DIR") or None)
    return MeetingRecords(store)
