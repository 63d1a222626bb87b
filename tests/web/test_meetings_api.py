"""The meetings API of `roomscribe serve`, on SQLite and on PostgreSQL: listing (paging,
time and source filters), a meeting's document (segments, who spoke, language), every export
format (translated where translations exist), deleting, bad requests; and live meetings over
`/asr?meeting_id=`: every final a client saw is stored, on the meeting's clock, and two
connections naming one meeting are two participants of it."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from roomscribe.store import Segment
from support.asr import assert_finished, chunks, converse, seconds
from support.meetings import DATABASES, call, fresh_database, meeting_server, store_of, wait_for_meeting
from support.speech import wer
from support.uploads import form


@pytest.fixture(scope="module", params=DATABASES)
def database(request, tmp_path_factory):
    yield from fresh_database(request, tmp_path_factory)


@pytest.fixture(scope="module")
def server(engine, database):
    """A private server (no keys): the local tenant, and any tenant a request names."""
    with meeting_server(engine, database) as running:
        yield running


# -- listing ---------------------------------------------------------------------------------------

BASE = 1_700_000_000.0  # 2023-11-14T22:13:20Z
LISTED = [  # id, source, started_at
    ("m-0", "upload", BASE),
    ("m-1", "asr", BASE + 100),
    ("m-2", "upload", BASE + 200),
    ("m-3", "page", BASE + 300),
    ("m-4", "upload", BASE + 400),
]


@pytest.fixture(scope="module")
def listed(server):
    """Meetings of tenant "paging", made in the store with known start times."""
    store = store_of(server)
    for meeting_id, source, started_at in LISTED:
        store.open_meeting("paging", meeting_id, source=source, started_at=started_at)
        store.end_meeting("paging", meeting_id, ended_at=started_at + 60)
    return "paging"


def page(server, query: str = "", tenant: str = "paging") -> dict:
    reply = call("GET", f"{server.url}/meetings{query}", tenant=tenant)
    assert reply.status == 200, reply.body
    return reply.json()


def test_meetings_are_listed_newest_first_in_pages(server, listed):
    everything = page(server)
    assert everything["tenant"] == "paging" and everything["total"] == 5 and everything["next_offset"] is None
    assert [m["id"] for m in everything["meetings"]] == ["m-4", "m-3", "m-2", "m-1", "m-0"]
    first = everything["meetings"][-1]
    assert first == {
        "id": "m-0",
        "tenant": "paging",
        "source": "upload",
        "title": None,
        "user_id": None,
        "language": None,
        "started_at": BASE,
        "ended_at": BASE + 60,
        "status": "ended",
        "metadata": {},
        "segments_count": 0,
    }
    # Walking the pages by next_offset gives every meeting once, in order.
    seen, offset = [], 0
    while offset is not None:
        got = page(server, f"?limit=2&offset={offset}")
        assert got["limit"] == 2 and got["offset"] == offset and got["total"] == 5
        seen += [m["id"] for m in got["meetings"]]
        offset = got["next_offset"]
    assert seen == ["m-4", "m-3", "m-2", "m-1", "m-0"]
    assert page(server, "?limit=2&offset=4") == {**page(server, "?limit=2&offset=4"), "next_offset": None}
    past = page(server, "?offset=10")
    assert past["meetings"] == [] and past["next_offset"] is None and past["total"] == 5
    assert page(server, "?limit=200")["total"] == 5


def test_meetings_are_filtered_by_time_and_source(server, listed):
    def ids(query):
        got = page(server, query)
        assert got["total"] == len(got["meetings"])
        return [m["id"] for m in got["meetings"]]

    assert ids(f"?since={BASE + 100}") == ["m-4", "m-3", "m-2", "m-1"]
    assert ids(f"?until={BASE + 300}") == ["m-2", "m-1", "m-0"]  # since <= started_at < until
    assert ids(f"?since={BASE + 100}&until={BASE + 300}") == ["m-2", "m-1"]
    assert ids("?source=upload") == ["m-4", "m-2", "m-0"]
    assert ids(f"?source=upload&since={BASE + 1}") == ["m-4", "m-2"]
    assert ids("?source=livekit") == []
    # ISO 8601, with a zone or as UTC's Z.
    assert ids("?since=2023-11-14T22:15:00Z") == ["m-4", "m-3", "m-2", "m-1"]
    assert ids("?since=2023-11-14T23:15:00%2B01:00&until=2023-11-14T22:18:20Z") == ["m-2", "m-1"]
    # Paging within a filter.
    got = page(server, "?source=upload&limit=1&offset=1")
    assert [m["id"] for m in got["meetings"]] == ["m-2"] and got["total"] == 3 and got["next_offset"] == 2


@pytest.mark.parametrize(
    "query, message",
    [
        ("?limit=abc", "limit"),
        ("?limit=-1", "limit"),
        ("?limit=0", "limit"),
        ("?limit=201", "limit"),
        ("?limit=1.5", "limit"),
        ("?offset=-3", "offset"),
        ("?offset=x", "offset"),
        ("?since=yesterday", "since"),
        ("?until=2023-13-45", "until"),
        ("?since=nan", "since"),
        ("?until=inf", "until"),
        ("?since=1e999", "since"),
    ],
)
def test_bad_list_parameters_are_400s_with_the_reason(server, listed, query, message):
    reply = call("GET", f"{server.url}/meetings{query}", tenant="paging")
    assert reply.status == 400, (query, reply.status, reply.body)
    assert message in reply.error()


# -- a meeting's document and its exports ------------------------------------------------------------


def _segment(segment_id, participant, start, end, text, speaker=None, translations=None, confidence=0.9):
    words = text.split()
    step = (end - start) / len(words)
    return Segment(
        segment_id=segment_id,
        participant=participant,
        start=start,
        end=end,
        text=text,
        speaker=speaker,
        language="en",
        confidence=confidence,
        words=[
            {
                "word": w,
                "start": round(start + i * step, 3),
                "end": round(start + (i + 1) * step, 3),
                "probability": 0.9,
            }
            for i, w in enumerate(words)
        ],
        translations=translations or {},
    )


STORED = [
    _segment("s1", "alice", 0.5, 2.0, "Hello everyone.", translations={"ko": "안녕하세요 여러분."}),
    _segment("s2", "bob", 2.5, 4.0, "Hi Alice, good morning.", translations={"ko": "안녕 앨리스, 좋은 아침."}),
    _segment("s3", "room", 4.25, 5.0, "Can you hear us?", speaker="S2", translations={"ko": "들리세요?"}),
    _segment("s4", "alice", 5.5, 7.0, "Let us start with the budget."),  # not translated (yet)
]


@pytest.fixture(scope="module")
def stored(server):
    """A meeting with three speakers (one a voice on a shared track) and Korean translations."""
    store = store_of(server)
    store.open_meeting("local", "standup-7", source="livekit", title="Standup", started_at=BASE)
    store.save_segments("local", "standup-7", STORED)
    store.end_meeting("local", "standup-7", ended_at=BASE + 7)
    return "standup-7"


def test_a_meeting_document_has_its_segments_speakers_and_language(server, stored):
    reply = call("GET", f"{server.url}/meetings/{stored}")
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["id"] == stored and doc["tenant"] == "local" and doc["source"] == "livekit"
    assert doc["title"] == "Standup" and doc["status"] == "ended" and doc["segments_count"] == 4
    assert doc["language"] == "en"  # as most of it was spoken
    assert doc["duration"] == 7.0 and doc["total_segments"] == 4 and doc["total_speakers"] == 3
    assert [s["segment_id"] for s in doc["segments"]] == ["s1", "s2", "s3", "s4"]
    assert [s["label"] for s in doc["segments"]] == ["alice", "bob", "room (S2)", "alice"]
    first = doc["segments"][0]
    assert first["start"] == 0.5 and first["end"] == 2.0 and first["confidence"] == 0.9
    assert first["words"][0] == {"word": "Hello", "start": 0.5, "end": 1.25, "probability": 0.9}
    assert first["translations"] == {"ko": "안녕하세요 여러분."}
    assert doc["speakers"] == {
        "alice": {
            "total_duration": 3.0,
            "segments_count": 2,
            "text_parts": ["Hello everyone.", "Let us start with the budget."],
        },
        "bob": {"total_duration": 1.5, "segments_count": 1, "text_parts": ["Hi Alice, good morning."]},
        "room (S2)": {"total_duration": 0.75, "segments_count": 1, "text_parts": ["Can you hear us?"]},
    }
    assert doc["transcript"].splitlines()[0] == "alice: Hello everyone."
    assert set(doc["translations"]) == {"ko"} and doc["translations"]["ko"].startswith("안녕하세요 여러분.")


def export(server, meeting_id: str, query: str, tenant: str | None = None):
    reply = call("GET", f"{server.url}/meetings/{meeting_id}/transcript{query}", tenant=tenant)
    assert reply.status == 200, (query, reply.body)
    return reply


def test_every_export_format(server, stored):
    txt = export(server, stored, "")
    assert txt.content_type == "text/plain" and txt.headers["Content-Disposition"] == (
        f'attachment; filename="{stored}.txt"'
    )
    assert txt.text == (
        "alice: Hello everyone.\n"
        "bob: Hi Alice, good morning.\n"
        "room (S2): Can you hear us?\n"
        "alice: Let us start with the budget.\n"
    )
    assert export(server, stored, "?format=txt").text == txt.text

    srt = export(server, stored, "?format=srt")
    assert srt.content_type == "application/x-subrip"
    assert srt.text.startswith("1\n00:00:00,500 --> 00:00:02,000\nalice: Hello everyone.\n\n2\n00:00:02,500 --> ")
    assert "4\n00:00:05,500 --> 00:00:07,000\nalice: Let us start with the budget.\n" in srt.text

    vtt = export(server, stored, "?format=vtt")
    assert vtt.content_type == "text/vtt"
    assert vtt.text.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.000\nalice: Hello everyone.\n")
    assert "00:00:04.250 --> 00:00:05.000\nroom (S2): Can you hear us?\n" in vtt.text

    as_json = export(server, stored, "?format=json")
    assert as_json.content_type == "application/json"
    assert as_json.json() == call("GET", f"{server.url}/meetings/{stored}").json()

    rttm = export(server, stored, "?format=rttm")
    assert rttm.text.splitlines() == [
        f"SPEAKER {stored} 1 0.500 1.500 <NA> <NA> alice <NA> <NA>",
        f"SPEAKER {stored} 1 2.500 1.500 <NA> <NA> bob <NA> <NA>",
        f"SPEAKER {stored} 1 4.250 0.750 <NA> <NA> room:S2 <NA> <NA>",
        f"SPEAKER {stored} 1 5.500 1.500 <NA> <NA> alice <NA> <NA>",
    ]


def test_a_translated_export(server, stored):
    txt = export(server, stored, "?format=txt&language=ko")
    # A segment not translated shows what was said.
    assert txt.text.splitlines() == [
        "alice: 안녕하세요 여러분.",
        "bob: 안녕 앨리스, 좋은 아침.",
        "room (S2): 들리세요?",
        "alice: Let us start with the budget.",
    ]
    srt = export(server, stored, "?format=srt&language=korean")
    assert "00:00:02,500 --> 00:00:04,000\nbob: 안녕 앨리스, 좋은 아침.\n" in srt.text
    vtt = export(server, stored, "?format=vtt&language=ko")
    assert "00:00:00.500 --> 00:00:02.000\nalice: 안녕하세요 여러분.\n" in vtt.text
    # The language it was spoken in is the transcript as spoken.
    assert export(server, stored, "?language=en").text == export(server, stored, "").text
    # A language nothing was translated into is not passed off as a translation.
    reply = call("GET", f"{server.url}/meetings/{stored}/transcript?format=txt&language=es")
    assert reply.status == 404 and "es" in reply.error() and "ko" in reply.error()


@pytest.mark.parametrize(
    "path, message",
    [
        ("/meetings/standup-7/transcript?format=doc", "format"),
        ("/meetings/standup-7/transcript?language=klingon", "language"),
        ("/meetings/-bad/transcript", "meeting id"),
        ("/meetings/a%20b", "meeting id"),
        ("/meetings/" + "x" * 129, "meeting id"),
        ("/meetings/%C3%A9t%C3%A9", "meeting id"),
    ],
)
def test_bad_meeting_requests_are_400s_with_the_reason(server, stored, path, message):
    for method in ("GET", "DELETE") if "transcript" not in path else ("GET",):
        reply = call(method, server.url + path)
        assert reply.status == 400, (method, path, reply.status, reply.body)
        assert message in reply.error()


def test_a_real_upload_is_stored_with_words_confidence_and_who_spoke(server, clip):
    path, reference, duration = clip
    reply = call(
        "POST",
        server.url + "/transcribe",
        data=form(path.read_bytes(), "clip.flac", meeting_id="upload-1", user_id="alice"),
    )
    assert reply.status == 200, reply.body
    uploaded = reply.json()
    doc = call("GET", f"{server.url}/meetings/upload-1").json()
    assert doc["source"] == "upload" and doc["title"] == "clip.flac" and doc["user_id"] == "alice"
    assert doc["language"] == "en" and doc["status"] == "ended"
    assert [s["text"] for s in doc["segments"]] == [s["text"] for s in uploaded["segments"]]
    for stored, given in zip(doc["segments"], uploaded["segments"], strict=True):
        assert stored["participant"] == "alice" and stored["label"] == "alice" and stored["speaker"] is None
        assert (stored["start"], stored["end"]) == (given["start"], given["end"])
        assert [w["word"] for w in stored["words"]] == [w["word"] for w in given["words"]]
        assert 0.3 < stored["confidence"] <= 1.0
    assert set(doc["speakers"]) == {"alice"} and doc["total_speakers"] == 1
    assert wer(reference, " ".join(doc["speakers"]["alice"]["text_parts"])) <= 0.2
    assert abs(doc["duration"] - duration) < 0.5
    assert export(server, "upload-1", "").text.startswith("alice: ")

    # Without a user id: no name to give, but still who spoke in every export.
    reply = call("POST", server.url + "/transcribe", data=form(path.read_bytes(), "clip.flac", meeting_id="upload-2"))
    assert reply.status == 200, reply.body
    doc = call("GET", f"{server.url}/meetings/upload-2").json()
    assert set(doc["speakers"]) == {"unknown"}
    assert export(server, "upload-2", "").text.startswith("unknown: ")
    rttm = export(server, "upload-2", "?format=rttm").text.splitlines()
    assert len(rttm) == len(doc["segments"]) and rttm[0].startswith("SPEAKER upload-2 1 ")


def test_audio_is_kept_only_when_the_server_keeps_audio(engine, server, clip, tmp_path):
    path = clip[0]
    reply = call("POST", server.url + "/transcribe", data=form(path.read_bytes(), "clip.flac", meeting_id="no-audio"))
    assert reply.status == 200
    missing = call("GET", f"{server.url}/meetings/no-audio/audio")
    assert missing.status == 404 and "--keep-audio" in missing.text
    with meeting_server(engine, f"sqlite://{tmp_path / 'kept.db'}", keep_audio=True) as keeping:
        reply = call("POST", keeping.url + "/transcribe", data=form(path.read_bytes(), "clip.flac", meeting_id="kept"))
        assert reply.status == 200
        audio = call("GET", f"{keeping.url}/meetings/kept/audio")
        assert audio.status == 200 and audio.body == path.read_bytes()


def test_deleting_a_meeting(server):
    store = store_of(server)
    store.open_meeting("local", "doomed", source="upload")
    store.save_segments("local", "doomed", [_segment("s1", "alice", 0, 1, "Goodbye.")])
    reply = call("DELETE", f"{server.url}/meetings/doomed")
    assert reply.status == 200 and reply.json() == {"deleted": "doomed"}
    for method, path in (
        ("GET", "/meetings/doomed"),
        ("GET", "/meetings/doomed/transcript"),
        ("GET", "/meetings/doomed/transcript?format=json"),
        ("DELETE", "/meetings/doomed"),
    ):
        reply = call(method, server.url + path)
        assert reply.status == 404, (method, path)
        assert "doomed" in reply.error()
    assert "doomed" not in [m["id"] for m in page(server, "?limit=200", tenant="local")["meetings"]]
    assert store.segments("local", "doomed") == []


# -- live meetings over /asr -----------------------------------------------------------------------


def final_lines(conv) -> list[dict]:
    assert_finished(conv)
    return conv.messages[-2]["lines"]


def test_asr_finals_are_stored_on_the_meeting_clock_and_connections_are_participants(server, speech_short, clip):
    opened = time.time()
    alice = asyncio.run(
        converse(server.url, chunks(speech_short.pcm, 6400), query="?meeting_id=standup-42&name=alice&user_id=u-1")
    )
    lines = final_lines(alice)
    assert lines and wer(speech_short.text, " ".join(line["text"] for line in lines)) <= 0.2
    # Stored before they were sent: every final is there as soon as the client has it.
    doc = call("GET", f"{server.url}/meetings/standup-42").json()
    assert [s["text"] for s in doc["segments"]] == [line["text"] for line in lines]
    # The meeting ends once the connection is done with (just after the socket closes).
    doc = wait_for_meeting(server.url, "standup-42")
    assert doc["source"] == "asr" and doc["user_id"] == "u-1" and doc["status"] == "ended"
    assert doc["started_at"] >= opened - 1
    # Every final the client saw is in the meeting, word for word, in order.
    assert [s["text"] for s in doc["segments"]] == [line["text"] for line in lines]
    for segment, line in zip(doc["segments"], lines, strict=True):
        assert segment["participant"] == "alice" and segment["speaker"] is None
        # The line's clock is whole seconds of the connection; alice opened the meeting.
        assert seconds(line["start"]) - 0.01 <= segment["start"] < seconds(line["start"]) + 1.5, (segment, line)
        assert segment["words"] and 0 < segment["confidence"] <= 1 and segment["language"] == "en"

    time.sleep(1.0)
    joined = time.time() - doc["started_at"]
    pcm = read_pcm(clip[0])
    bob = asyncio.run(converse(server.url, chunks(pcm, 6400), query="?meeting_id=standup-42&name=bob"))
    bob_lines = final_lines(bob)
    assert bob_lines
    assert call("GET", f"{server.url}/meetings/standup-42").json()["segments_count"] == len(lines) + len(bob_lines)
    doc = wait_for_meeting(server.url, "standup-42")
    assert doc["status"] == "ended" and doc["segments_count"] == len(lines) + len(bob_lines)
    assert set(doc["speakers"]) == {"alice", "bob"} and doc["total_speakers"] == 2
    bobs = [s for s in doc["segments"] if s["participant"] == "bob"]
    assert [s["text"] for s in bobs] == [line["text"] for line in bob_lines]
    # bob's clock started when he joined: his lines are at their time on the meeting's clock.
    # (alice's audio went faster than real time, so her speech may reach past it.)
    for segment, line in zip(bobs, bob_lines, strict=True):
        offset = segment["start"] - seconds(line["start"])
        assert joined - 0.5 <= offset <= joined + 1.5, (joined, segment, line)
    assert [s["participant"] for s in doc["segments"]] == ["alice"] * len(lines) + ["bob"] * len(bob_lines)
    assert [m["id"] for m in page(server, "?source=asr", tenant="local")["meetings"]] == ["standup-42"]


def test_asr_refuses_a_malformed_meeting_id_before_the_upgrade(server):
    reply = call("GET", f"{server.url}/asr?meeting_id=../../x")
    assert reply.status == 400 and "meeting id" in reply.error()


def read_pcm(path) -> bytes:
    from support.asr import pcm16
    from support.speech import read_audio

    return pcm16(read_audio(path))


def test_meetings_api_answers_json_errors_for_unknown_ids(server):
    reply = call("GET", f"{server.url}/meetings/never-was")
    assert reply.status == 404 and json.loads(reply.body)["error"]["type"] == "invalid_request_error"
    assert re.search("never-was", reply.error())


def test_a_server_without_records_says_so(engine, clip):
    from roomscribe.web.config import ServerConfig
    from support.serving import running_server

    with running_server(engine, ServerConfig(host="127.0.0.1", port=0, records=False)) as bare:
        for method, path in (
            ("GET", "/meetings"),
            ("GET", "/meetings/x"),
            ("GET", "/meetings/x/transcript"),
            ("DELETE", "/meetings/x"),
            ("POST", "/stt/process"),
        ):
            reply = call(method, bare.url + path)
            assert reply.status == 501, (method, path, reply.body)
            assert "records" in reply.error()
        assert call("POST", bare.url + "/stt/upload", data=form(b"x", "a.wav")).status == 501
        # /stt/realtime still captions there (keeping nothing): a plain GET is told to upgrade.
        assert call("GET", bare.url + "/stt/realtime").status == 426
        assert call("POST", bare.url + "/jobs", json={"url": "https://a.example/x.wav"}).status in (404, 405)
        # Files are still transcribed, and stored nowhere.
        reply = call("POST", bare.url + "/transcribe", data=form(clip[0].read_bytes(), "clip.flac", meeting_id="m"))
        assert reply.status == 200 and "meeting_id" not in reply.json()
        assert "X-Roomscribe-Meeting" not in reply.headers
        assert call("GET", bare.url + "/stt/status").json()["records"] is False
