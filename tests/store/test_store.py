"""The store on SQLite and on PostgreSQL alike: keys, meetings and their segments, audio and
jobs; every call kept to its tenant; ids checked; concurrent callers; retention."""

from __future__ import annotations

import re
import threading

import pytest

from roomscribe.store import Segment, StoreError, new_meeting_id, parse_meeting_id, parse_tenant


def _segment(segment_id: str, start: float, text: str = "hello", **fields) -> Segment:
    return Segment(segment_id=segment_id, participant="ann", start=start, end=start + 1.0, text=text, **fields)


# -- keys ----------------------------------------------------------------------------------


def test_keys_are_created_verified_listed_and_revoked(store):
    assert not store.has_keys()
    key, secret = store.create_key("acme", "laptop")
    other, other_secret = store.create_key("beta")
    assert re.fullmatch(r"k_[a-z0-9]{8}", key.id) and key.id != other.id
    assert secret.startswith("rs_") and len(secret) > 40 and secret != other_secret
    assert (key.tenant, key.label, key.revoked_at, key.last_used_at) == ("acme", "laptop", None, None)
    assert store.has_keys()

    assert store.tenant_for_key(secret) == "acme"
    assert store.tenant_for_key(other_secret) == "beta"
    assert store.tenant_for_key(secret + "x") is None
    assert store.tenant_for_key("") is None

    assert [k.id for k in store.list_keys()] == [key.id, other.id]
    (listed,) = store.list_keys("acme")
    assert listed.id == key.id and listed.last_used_at is not None  # it was used above
    assert store.list_keys("nobody") == [] and store.list_keys("not a tenant!") == []

    assert store.revoke_key(key.id) is True
    assert store.revoke_key(key.id) is False  # already revoked
    assert store.revoke_key("k_unknown0") is False
    assert store.tenant_for_key(secret) is None
    assert store.tenant_for_key(other_secret) == "beta"
    assert store.list_keys("acme")[0].revoked_at is not None
    assert store.has_keys()  # a revoked key still counts: the store stays locked


def test_only_a_hash_of_the_secret_is_kept(store):
    _, secret = store.create_key("acme")
    with store._db.transaction() as cur:
        rows = cur.all("SELECT * FROM api_keys")
    assert rows and not any(secret in str(value) or secret[3:] in str(value) for value in rows[0])


def test_last_use_is_written_at_most_once_a_minute(store):
    key, secret = store.create_key("acme")
    store.tenant_for_key(secret)
    first = store.list_keys("acme")[0].last_used_at
    store.tenant_for_key(secret)
    assert store.list_keys("acme")[0].last_used_at == first


# -- meetings ------------------------------------------------------------------------------


def test_open_meeting_creates_once_and_returns_the_one_there_is(store):
    first = store.open_meeting(
        "acme", "room-1", source="livekit", title="Standup", user_id="u1", language="en", metadata={"room": "r"}
    )
    assert (first.status, first.ended_at, first.segments_count, first.metadata) == ("live", None, 0, {"room": "r"})
    again = store.open_meeting("acme", "room-1", source="page", title="Other", started_at=5.0)
    assert again == first  # unchanged: the first opener's title, source and start

    store.end_meeting("acme", "room-1", ended_at=first.started_at + 60)
    ended = store.get_meeting("acme", "room-1")
    assert (ended.status, ended.ended_at) == ("ended", first.started_at + 60)
    reopened = store.open_meeting("acme", "room-1", source="livekit")
    assert (reopened.status, reopened.ended_at, reopened.title) == ("live", None, "Standup")

    store.end_meeting("acme", "room-1", status="failed")
    assert store.get_meeting("acme", "room-1").status == "failed"
    with pytest.raises(ValueError):
        store.end_meeting("acme", "room-1", status="paused")


def test_open_meeting_from_many_threads_at_once(store):
    barrier, results, errors = threading.Barrier(8), [], []

    def open_it(n: int) -> None:
        try:
            barrier.wait()
            results.append(store.open_meeting("acme", "busy-room", source="livekit", title=f"worker {n}"))
            store.save_segments("acme", "busy-room", [_segment(f"w{n}", float(n))])
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len({(m.id, m.title, m.started_at) for m in results}) == 1  # one meeting, the first opener's
    assert store.count_meetings("acme") == 1
    assert [s.segment_id for s in store.segments("acme", "busy-room")] == [f"w{n}" for n in range(8)]


def test_a_file_transcribed_again_replaces_all_its_segments(store):
    store.open_meeting("acme", "upload", source="upload")
    store.save_segments("acme", "upload", [_segment(str(i), float(i), f"take one {i}") for i in range(3)])
    store.save_segments("acme", "upload", [_segment("0", 0.0, "take two")], replace=True)
    assert [(s.segment_id, s.text) for s in store.segments("acme", "upload")] == [("0", "take two")]
    store.save_segments("acme", "upload", [], replace=True)
    assert store.segments("acme", "upload") == []


def test_a_segment_with_no_text_removes_the_stored_one_of_its_id(store):
    store.open_meeting("acme", "m1", source="page")
    store.save_segments("acme", "m1", [_segment("a", 1.0, "movable types"), _segment("b", 2.0, "pips")])
    store.save_segments("acme", "m1", [_segment("b", 2.0, ""), _segment("c", 3.0, "now")])
    assert [(s.segment_id, s.text) for s in store.segments("acme", "m1")] == [("a", "movable types"), ("c", "now")]
    store.save_segments("acme", "m1", [_segment("d", 4.0, " ")])  # never stored: nothing to remove
    assert [s.segment_id for s in store.segments("acme", "m1")] == ["a", "c"]


def test_segments_are_replaced_by_a_newer_one_of_the_same_id(store):
    store.open_meeting("acme", "m1", source="page")
    words = [{"word": "hello", "start": 3.0, "end": 3.4, "probability": 0.9}]
    store.save_segments(
        "acme",
        "m1",
        [
            _segment("b", 3.0, "hello", words=words, confidence=0.9, language="en", speaker="S1", track="TR_1"),
            _segment("a", 1.0, "first"),
            _segment("c", 3.0, "same start"),
        ],
    )
    assert [s.segment_id for s in store.segments("acme", "m1")] == ["a", "b", "c"]  # by start, then id
    stored = store.segments("acme", "m1")[1]
    assert (stored.words, stored.confidence, stored.language, stored.speaker, stored.track) == (
        words,
        0.9,
        "en",
        "S1",
        "TR_1",
    )
    assert stored.stored_at > 0 and not stored.revised

    revised = _segment("b", 3.1, "hello there", revised=True, translations={"ko": "안녕하세요"})
    store.save_segments("acme", "m1", [revised])
    segments = store.segments("acme", "m1")
    assert [s.segment_id for s in segments] == ["a", "c", "b"]  # b starts later now
    b = segments[2]
    assert (b.text, b.revised, b.translations, b.start) == ("hello there", True, {"ko": "안녕하세요"}, 3.1)
    assert b.words == [] and b.confidence is None  # replaced whole, not merged

    store.save_segments("acme", "m1", [_segment("d", 9.0, "old"), _segment("d", 9.0, "new")])
    assert store.segments("acme", "m1")[-1].text == "new"  # within one call, the later one wins
    assert store.get_meeting("acme", "m1").segments_count == 4
    store.save_segments("acme", "m1", [])  # nothing to do


def test_segments_need_their_meeting(store):
    with pytest.raises(StoreError, match="no meeting"):
        store.save_segments("acme", "never-opened", [_segment("a", 0.0)])


def test_listing_is_newest_first_paged_and_filtered(store):
    for n, source in enumerate(["page", "livekit", "page", "upload", "page"], start=1):
        store.open_meeting("acme", f"m{n}", source=source, started_at=n * 100.0)
    store.open_meeting("beta", "b1", source="page", started_at=250.0)
    store.save_segments("acme", "m2", [_segment("x", 0.0), _segment("y", 1.0)])

    assert [m.id for m in store.list_meetings("acme")] == ["m5", "m4", "m3", "m2", "m1"]
    assert [m.id for m in store.list_meetings("acme", limit=2)] == ["m5", "m4"]
    assert [m.id for m in store.list_meetings("acme", limit=2, offset=2)] == ["m3", "m2"]
    assert [m.id for m in store.list_meetings("acme", limit=2, offset=4)] == ["m1"]
    assert store.list_meetings("acme", offset=10) == []
    assert [m.id for m in store.list_meetings("acme", since=200, until=400)] == ["m3", "m2"]
    assert [m.id for m in store.list_meetings("acme", source="page")] == ["m5", "m3", "m1"]
    assert [m.id for m in store.list_meetings("acme", source="page", since=300)] == ["m5", "m3"]
    assert store.list_meetings("acme", since=200, until=400)[1].segments_count == 2

    assert store.count_meetings("acme") == 5
    assert store.count_meetings("acme", since=200, until=400) == 2
    assert store.count_meetings("acme", source="page", until=300) == 1
    assert store.count_meetings("beta") == 1
    with pytest.raises(ValueError):
        store.list_meetings("acme", limit=-1)


def test_deleting_a_meeting_deletes_its_segments_and_audio(store):
    store.open_meeting("acme", "m1", source="upload")
    store.save_segments("acme", "m1", [_segment("a", 0.0), _segment("b", 1.0)])
    store.save_audio("acme", "m1", "upload.ogg", b"OggS...", "audio/ogg")
    store.open_meeting("acme", "m2", source="upload")
    store.save_segments("acme", "m2", [_segment("a", 0.0)])

    assert store.delete_meeting("acme", "m1") is True
    assert store.delete_meeting("acme", "m1") is False
    assert store.get_meeting("acme", "m1") is None
    assert store.segments("acme", "m1") == [] and store.audio("acme", "m1") == []
    assert len(store.segments("acme", "m2")) == 1  # the other meeting keeps its own

    again = store.open_meeting("acme", "m1", source="upload")  # the id is free again, and empty
    assert again.segments_count == 0 and store.audio("acme", "m1") == []


def test_audio_is_kept_byte_for_byte(store):
    store.open_meeting("acme", "m1", source="url")
    data = bytes(range(256)) * 4000
    store.save_audio("acme", "m1", "a.wav", data, "audio/wav")
    store.save_audio("acme", "m1", "b.opus", b"\x00\x01", "audio/ogg")
    assert store.audio("acme", "m1") == [("a.wav", "audio/wav", data), ("b.opus", "audio/ogg", b"\x00\x01")]
    store.save_audio("acme", "m1", "a.wav", b"smaller", "audio/x-wav")  # replaced by name
    assert store.audio("acme", "m1")[0] == ("a.wav", "audio/x-wav", b"smaller")
    with pytest.raises(StoreError, match="no meeting"):
        store.save_audio("acme", "nope", "a.wav", b"x", "audio/wav")


def test_another_tenant_cannot_reach_a_meeting_even_by_id(store):
    store.open_meeting("acme", "shared-id", source="page", title="acme's")
    store.save_segments("acme", "shared-id", [_segment("s1", 0.0, "acme only")])
    store.save_audio("acme", "shared-id", "a.wav", b"acme audio", "audio/wav")
    job = store.create_job("acme", "url", meeting_id="shared-id", params={"url": "http://x"})

    assert store.get_meeting("beta", "shared-id") is None
    assert store.list_meetings("beta") == [] and store.count_meetings("beta") == 0
    assert store.segments("beta", "shared-id") == []
    assert store.audio("beta", "shared-id") == []
    assert store.get_job("beta", job.id) is None
    assert store.delete_meeting("beta", "shared-id") is False
    with pytest.raises(StoreError):
        store.save_segments("beta", "shared-id", [_segment("s1", 0.0, "beta's words")])
    with pytest.raises(StoreError):
        store.save_audio("beta", "shared-id", "a.wav", b"beta audio", "audio/wav")
    store.end_meeting("beta", "shared-id")
    assert store.get_meeting("acme", "shared-id").status == "live"

    # The same id is a different meeting for another tenant.
    theirs = store.open_meeting("beta", "shared-id", source="asr", title="beta's")
    assert (theirs.title, theirs.segments_count) == ("beta's", 0)
    store.save_segments("beta", "shared-id", [_segment("s1", 0.0, "beta's words")])
    assert [s.text for s in store.segments("acme", "shared-id")] == ["acme only"]
    assert [s.text for s in store.segments("beta", "shared-id")] == ["beta's words"]
    assert store.delete_meeting("beta", "shared-id")
    assert store.get_meeting("acme", "shared-id").title == "acme's"
    assert store.audio("acme", "shared-id") == [("a.wav", "audio/wav", b"acme audio")]
    assert store.get_job("acme", job.id).params == {"url": "http://x"}


def test_retention_deletes_meetings_that_started_before_the_cutoff(store):
    day, now = 86400.0, 1_800_000_000.0
    store.open_meeting("acme", "old", source="page", started_at=now - 40 * day)
    store.save_segments("acme", "old", [_segment("a", 0.0)])
    store.save_audio("acme", "old", "a.wav", b"x", "audio/wav")
    store.open_meeting("beta", "old-too", source="page", started_at=now - 31 * day)
    store.open_meeting("acme", "recent", source="page", started_at=now - 29 * day)
    store.save_segments("acme", "recent", [_segment("a", 0.0)])

    assert store.delete_expired(30, now=now) == 2
    assert store.get_meeting("acme", "old") is None and store.get_meeting("beta", "old-too") is None
    assert store.segments("acme", "old") == [] and store.audio("acme", "old") == []
    assert store.get_meeting("acme", "recent").segments_count == 1
    assert store.delete_expired(30, now=now) == 0


def test_jobs_and_interrupted_jobs(store):
    store.open_meeting("acme", "m1", source="url")
    job = store.create_job("acme", "url", meeting_id="m1", params={"url": "https://example.org/a.mp3"}, owner="p1")
    assert (job.status, job.progress, job.error, job.result) == ("queued", 0.0, None, {})
    assert re.fullmatch(r"j_[A-Za-z0-9_-]{16}", job.id)
    assert store.get_job("acme", job.id) == job

    store.update_job(job.id, status="running", progress=0.25)
    running = store.get_job("acme", job.id)
    assert (running.status, running.progress, running.params) == ("running", 0.25, job.params)
    assert running.updated_at >= job.updated_at

    done = store.create_job("acme", "upload", owner="p1")
    store.update_job(done.id, status="done", progress=1.0, result={"meeting_id": "m1", "segments": 3})
    assert store.get_job("acme", done.id).result == {"meeting_id": "m1", "segments": 3}
    queued = store.create_job("acme", "upload", owner="p1")
    elsewhere = store.create_job("acme", "upload", owner="p2")

    assert store.fail_interrupted_jobs("p1", "the server restarted") == 2
    assert [store.get_job("acme", j.id).status for j in (job, done, queued, elsewhere)] == [
        "failed",
        "done",
        "failed",
        "queued",
    ]
    assert store.get_job("acme", job.id).error == "the server restarted"
    assert store.fail_interrupted_jobs("p1", "again") == 0
    assert store.get_job("acme", "j_doesnotexist000") is None
    store.update_job("j_doesnotexist000", status="done")  # nothing to update
    with pytest.raises(ValueError):
        store.update_job(job.id, status="paused")
    assert job.as_dict()["id"] == job.id and "owner" not in job.as_dict()


def test_bad_tenants_and_meeting_ids_are_refused(store):
    for bad in ["", "-lead", "has space", "a/b", "x" * 65, "ünï"]:
        with pytest.raises(ValueError, match="tenant"):
            parse_tenant(bad)
        with pytest.raises(ValueError, match="tenant"):
            store.open_meeting(bad, "m1", source="page")
        with pytest.raises(ValueError, match="tenant"):
            store.create_key(bad)
    for bad in ["", ":lead", "a b", "../etc", "x" * 129]:
        with pytest.raises(ValueError, match="meeting id"):
            parse_meeting_id(bad)
        with pytest.raises(ValueError, match="meeting id"):
            store.open_meeting("acme", bad, source="page")
        with pytest.raises(ValueError, match="meeting id"):
            store.save_segments("acme", bad, [_segment("a", 0.0)])
        # A meeting of that id cannot exist: reads answer "none", as for another tenant's.
        assert store.get_meeting("acme", bad) is None
        assert store.segments("acme", bad) == [] and store.audio("acme", bad) == []
        assert store.delete_meeting("acme", bad) is False
    assert parse_tenant("Acme.eu-1_x") == "Acme.eu-1_x"
    assert parse_meeting_id("room:2024-05-01.a_b") == "room:2024-05-01.a_b"
    assert parse_meeting_id(new_meeting_id()).startswith("m_")
    with pytest.raises(ValueError, match="source"):
        store.open_meeting("acme", "m1", source="x" * 33)


def test_records_as_dicts(store):
    meeting = store.open_meeting("acme", "m1", source="page", title="T", metadata={"k": [1, 2]})
    store.save_segments("acme", "m1", [_segment("a", 1.23456, speaker="S2", confidence=0.87654)])
    assert meeting.as_dict() == {
        "id": "m1",
        "tenant": "acme",
        "source": "page",
        "title": "T",
        "user_id": None,
        "language": None,
        "started_at": meeting.started_at,
        "ended_at": None,
        "status": "live",
        "metadata": {"k": [1, 2]},
        "segments_count": 0,
    }
    out = store.segments("acme", "m1")[0].as_dict()
    assert (out["start"], out["end"], out["confidence"], out["speaker"]) == (1.235, 2.235, 0.877, "S2")
