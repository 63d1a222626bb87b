"""The recorder sink and the segment writer: finals become segments on the meeting's clock,
revisions and translations replace what was stored, and a store that goes away loses nothing
the buffer can hold (the oldest go first when it cannot), while the caller never sees an error."""

from __future__ import annotations

import logging

import pytest

from roomscribe.engine import Word
from roomscribe.session import Caption, Pipeline
from roomscribe.session.records import MeetingRecorder, SegmentWriter, segment_from_caption
from roomscribe.store import Segment, StoreUnavailableError, open_store


def _final(segment_id: str, text: str, start: float, participant: str = "ann", **fields) -> Caption:
    words = [
        Word(f" {w}", start + 0.5 * i, start + 0.5 * i + 0.4, probability=0.5 + 0.1 * i)
        for i, w in enumerate(text.split())
    ]
    return Caption(
        participant=participant,
        segment_id=segment_id,
        text=text,
        final=True,
        start=start,
        end=words[-1].end if words else start,
        words=words,
        **fields,
    )


class Switchable:
    """A real store that can be made to fail as a database that went away does."""

    def __init__(self, store, error: Exception | None = None):
        self.store = store
        self.down = False
        self.error = error or StoreUnavailableError("the database is down (test)")
        self.calls = 0

    def save_segments(self, tenant, meeting_id, segments):
        self.calls += 1
        if self.down:
            raise self.error
        self.store.save_segments(tenant, meeting_id, segments)


@pytest.fixture
def sqlite_store(tmp_path):
    store = open_store(data_dir=tmp_path)
    store.open_meeting("acme", "room-1", source="livekit", started_at=1000.0)
    yield store
    store.close()


@pytest.fixture
def writer(sqlite_store):
    writer = SegmentWriter(sqlite_store)
    yield writer
    writer.close()


def _texts(store, meeting_id="room-1") -> list[str]:
    return [s.text for s in store.segments("acme", meeting_id)]


def test_finals_are_stored_before_the_sink_returns_and_interims_are_not(sqlite_store, writer):
    recorder = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0)
    sink = recorder.sink()
    sink(Caption(participant="ann", segment_id="SG_1", text="", tail="hello wor", start=0.2, end=0.9))
    sink(Caption(participant="ann", segment_id="SG_1", text="hello", tail="world", start=0.2, end=1.2))
    sink(Caption(participant="ann", segment_id="SG_0", text="  ", final=True))  # nothing said
    assert sqlite_store.segments("acme", "room-1") == []

    sink(_final("SG_1", "hello world", 0.2, language="en", track="TR_a"))
    (stored,) = sqlite_store.segments("acme", "room-1")
    assert (stored.segment_id, stored.participant, stored.text, stored.language, stored.track) == (
        "SG_1",
        "ann",
        "hello world",
        "en",
        "TR_a",
    )
    status = writer.status()
    assert status.pop("write_ms")["count"] == 1  # how long the stored write took
    assert status == {"healthy": True, "buffered": 0, "dropped": 0, "written": 1, "last_error": None}


def test_a_speaker_who_joined_later_is_on_the_meeting_clock(sqlite_store, writer):
    recorder = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0)
    assert recorder.offset_of(1012.5) == 12.5
    late = Pipeline(sinks=[recorder.sink(participant_offset=12.5)])
    first = Pipeline(sinks=[recorder.sink()])
    late.send(_final("SG_1", "good morning", 1.0, participant="bob", speaker="S2"))
    first.send(_final("SG_1b", "hi everyone", 3.0))

    early, later = sqlite_store.segments("acme", "room-1")
    assert (early.participant, early.start) == ("ann", 3.0)
    assert (later.participant, later.speaker, later.start, later.end) == ("bob", "S2", 13.5, 12.5 + 1.9)
    assert later.words == [
        {"word": "good", "start": 13.5, "end": 13.9, "probability": 0.5},
        {"word": "morning", "start": 14.0, "end": 14.4, "probability": 0.6},
    ]
    assert later.confidence == pytest.approx(0.55)


def test_a_revision_and_a_translation_replace_the_stored_final(sqlite_store, writer):
    sink = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0).sink()
    sink(_final("SG_1", "their going home", 0.0))
    sink(_final("SG_1", "they're going home", 0.0, revised=True))
    (stored,) = sqlite_store.segments("acme", "room-1")
    assert (stored.text, stored.revised) == ("they're going home", True)

    sink(
        _final(
            "SG_1", "they're going home", 0.0, revised=True, translations={"ko": "그들은 집에 간다"}, translated=("ko",)
        )
    )
    (stored,) = sqlite_store.segments("acme", "room-1")
    assert stored.translations == {"ko": "그들은 집에 간다"} and stored.text == "they're going home"


def test_a_revision_with_no_text_removes_the_stored_segment_and_an_empty_final_stores_nothing(sqlite_store, writer):
    sink = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0).sink()
    sink(_final("SG_1", "movable types", 0.0))
    sink(_final("SG_2", "pips", 2.0))
    sink(_final("SG_3", "", 3.0))  # a segment that ended with nothing committed
    sink(_final("SG_2", "", 2.0, revised=True))  # a second hearing retracted it
    assert [s.segment_id for s in sqlite_store.segments("acme", "room-1")] == ["SG_1"]


def test_segment_from_caption_without_words():
    segment = segment_from_caption(
        Caption(participant="p", segment_id="s", text="hm", final=True, start=1, end=2), offset=2.0
    )
    assert segment == Segment("s", "p", 3.0, 4.0, "hm", confidence=None)


def test_segments_wait_in_order_while_the_store_is_down(sqlite_store, caplog):
    flaky = Switchable(sqlite_store)
    writer = SegmentWriter(flaky)
    sink = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0).sink()
    try:
        sink(_final("SG_1", "one", 0.0))
        flaky.down = True
        with caplog.at_level(logging.WARNING, logger="roomscribe.store"):
            sink(_final("SG_2", "two", 1.0))  # fails, and is kept
            sink(_final("SG_3", "three", 2.0))
            sink(_final("SG_2", "two again", 1.0, revised=True))  # takes the buffered one's place
        assert "unavailable" in caplog.text
        status = writer.status()
        assert (status["healthy"], status["buffered"], status["dropped"]) == (False, 2, 0)
        assert "down" in status["last_error"]
        assert _texts(sqlite_store) == ["one"]

        flaky.down = False
        sink(_final("SG_4", "four", 3.0))  # queued behind the buffered ones, not written ahead of them
        assert writer.flush(5.0)
        assert _texts(sqlite_store) == ["one", "two again", "three", "four"]
        status = writer.status()
        status.pop("write_ms")
        assert status == {"healthy": True, "buffered": 0, "dropped": 0, "written": 4, "last_error": None}

        sink(_final("SG_5", "five", 4.0))  # healthy and nothing waiting: written at once again
        assert _texts(sqlite_store)[-1] == "five"
    finally:
        writer.close()


def test_a_full_buffer_drops_the_oldest(sqlite_store):
    flaky = Switchable(sqlite_store)
    flaky.down = True
    writer = SegmentWriter(flaky, max_buffer=3)
    sink = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0).sink()
    try:
        for n in range(6):
            sink(_final(f"SG_{n}", f"words {n}", float(n)))
        assert writer.status()["buffered"] == 3 and writer.status()["dropped"] == 3
        flaky.down = False
        assert writer.flush(5.0)
        assert _texts(sqlite_store) == ["words 3", "words 4", "words 5"]
        assert writer.status()["dropped"] == 3
    finally:
        writer.close()


def test_the_writer_never_raises_to_the_caller(sqlite_store):
    broken = Switchable(sqlite_store, error=RuntimeError("a bug in the store"))
    broken.down = True
    writer = SegmentWriter(broken)
    try:
        writer.write("acme", "room-1", Segment("s1", "ann", 0.0, 1.0, "lost"))
        writer.write("acme", "not-opened", Segment("s2", "ann", 0.0, 1.0, "lost"))
        broken.down = False
        # A meeting that does not exist is refused, not retried forever ahead of the rest.
        writer.write("acme", "not-opened", Segment("s3", "ann", 0.0, 1.0, "refused"))
        writer.write("acme", "room-1", Segment("s4", "ann", 0.0, 1.0, "kept"))
        writer.write("bad tenant!", "room-1", Segment("s5", "ann", 0.0, 1.0, "refused"))
        assert writer.flush(5.0)
        assert _texts(sqlite_store) == ["kept"]
        status = writer.status()
        assert (status["written"], status["dropped"], status["buffered"]) == (1, 4, 0)
    finally:
        writer.close()
    writer.write("acme", "room-1", Segment("s6", "ann", 0.0, 1.0, "after close"))  # logged, not raised
    assert writer.status()["dropped"] == 5


def test_closing_stores_what_is_buffered(sqlite_store):
    flaky = Switchable(sqlite_store)
    flaky.down = True
    writer = SegmentWriter(flaky)
    writer.write("acme", "room-1", Segment("s1", "ann", 0.0, 1.0, "buffered"))
    flaky.down = False
    writer.close(timeout=5.0)
    assert _texts(sqlite_store) == ["buffered"]


def test_postgresql_going_away_and_coming_back_loses_nothing(postgres_server):
    url = postgres_server.create_database()
    store = open_store(url)
    writer = SegmentWriter(store)
    try:
        store.open_meeting("acme", "room-1", source="livekit")
        sink = MeetingRecorder(writer, "acme", "room-1", started_at=1000.0).sink()
        sink(_final("SG_0", "before", 0.0))
        postgres_server.stop()
        for n in range(1, 6):
            sink(_final(f"SG_{n}", f"during {n}", float(n)))  # returns at once: the server is down
        assert writer.status()["healthy"] is False and writer.status()["buffered"] == 5
        postgres_server.start()
        assert writer.flush(30.0)
        assert _texts(store) == ["before"] + [f"during {n}" for n in range(1, 6)]
        assert writer.status()["healthy"] is True
    finally:
        if not postgres_server.running:
            postgres_server.start()
        writer.close()
        store.close()
        postgres_server.drop_database(url)
