"""The `/stt` routes for clients of WhisperX-style meeting services, on SQLite and on
PostgreSQL: `/stt/upload` and `/stt/process` (a URL fetched from a loopback server the
operator allowed, waited for or in the background) answer in those services' shape and
store the meeting; URLs the server must not fetch are refused with the reason, and the
server goes on; `/stt/realtime` takes base64 PCM in JSON messages, pushes transcripts and
ends with the whole meeting, and survives malformed messages."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomscribe.engine import Word
from roomscribe.session import Caption
from roomscribe.web.stt_compat import RealtimeSession
from support.asr import pcm16
from support.meetings import (
    DATABASES,
    audio_chunk,
    call,
    fresh_database,
    healthy,
    media_files,
    meeting_server,
    realtime,
    transcripts_as_last_pushed,
    wait_for_job,
    wait_for_meeting,
)
from support.speech import read_audio, wer
from support.uploads import form

SHAPE = {
    "meeting_id",
    "tenant_id",
    "user_id",
    "transcript",
    "segments",
    "speakers",
    "confidence",
    "processing_time",
    "language",
    "duration",
    "total_segments",
    "total_speakers",
    "has_diarization",
}
SEGMENT_SHAPE = {"id", "segment_id", "start", "end", "text", "speaker", "confidence"}
HTML = b"<!DOCTYPE html>\n<html><head><title>Not audio</title></head><body></body></html>\n"


@pytest.fixture(scope="module", params=DATABASES)
def database(request, tmp_path_factory):
    yield from fresh_database(request, tmp_path_factory)


@pytest.fixture(scope="module")
def media(clip):
    with media_files({"clip.flac": clip[0].read_bytes(), "page.wav": HTML}) as served:
        yield served


@pytest.fixture(scope="module")
def server(engine, database):
    """A private server that may fetch from 127.0.0.1 (where the test's media server is)."""
    with meeting_server(engine, database, allow_fetch=("127.0.0.1/32",)) as running:
        yield running


def assert_shape(doc: dict, reference: str, duration: float, diarized: bool) -> None:
    assert set(doc) == SHAPE, set(doc) ^ SHAPE
    assert doc["language"] == "en" and doc["has_diarization"] is diarized
    assert doc["segments"] and doc["total_segments"] == len(doc["segments"])
    for i, segment in enumerate(doc["segments"]):
        assert set(segment) == SEGMENT_SHAPE, segment
        assert segment["id"] == i and 0 <= segment["start"] < segment["end"] <= duration + 0.5
        assert segment["text"].strip() and segment["speaker"]
        assert 0.3 < segment["confidence"] <= 1.0, segment
    assert doc["transcript"] == " ".join(s["text"] for s in doc["segments"])
    assert wer(reference, doc["transcript"]) <= 0.2, doc["transcript"]
    assert 0.3 < doc["confidence"] <= 1.0 and doc["processing_time"] > 0
    assert abs(doc["duration"] - duration) < 0.5
    speakers = {s["speaker"] for s in doc["segments"]}
    assert set(doc["speakers"]) == speakers and doc["total_speakers"] == len(speakers)
    for name, summary in doc["speakers"].items():
        mine = [s for s in doc["segments"] if s["speaker"] == name]
        assert summary["segments_count"] == len(mine)
        assert summary["text_parts"] == [s["text"] for s in mine]
        assert abs(summary["total_duration"] - sum(s["end"] - s["start"] for s in mine)) < 0.01


def assert_stored(server, doc: dict, source: str) -> dict:
    meeting = call("GET", f"{server.url}/meetings/{doc['meeting_id']}").json()
    assert meeting["source"] == source and meeting["status"] == "ended" and meeting["tenant"] == doc["tenant_id"]
    assert [s["segment_id"] for s in meeting["segments"]] == [s["segment_id"] for s in doc["segments"]]
    assert [s["text"] for s in meeting["segments"]] == [s["text"] for s in doc["segments"]]
    assert [s["start"] for s in meeting["segments"]] == [s["start"] for s in doc["segments"]]
    return meeting


# -- /stt/upload and /stt/process ----------------------------------------------------------------


def test_an_upload_is_diarized_by_default_answered_in_shape_and_stored(server, clip):
    path, reference, duration = clip
    reply = call(
        "POST",
        server.url + "/stt/upload",
        data=form(path.read_bytes(), "clip.flac", meeting_id="call-1", user_id="u-7", language="en"),
    )
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["meeting_id"] == "call-1" and doc["tenant_id"] == "local" and doc["user_id"] == "u-7"
    assert_shape(doc, reference, duration, diarized=True)
    assert set(doc["speakers"]) == {"SPEAKER_00"}  # one voice, named as those services name it
    meeting = assert_stored(server, doc, "upload")
    assert meeting["user_id"] == "u-7" and meeting["title"] == "clip.flac"

    # Not diarized: the segments are the uploader's.
    reply = call(
        "POST",
        server.url + "/stt/upload?diarize=false",
        data=form(path.read_bytes(), "clip.flac", user_id="u-7", tenant_id="local"),
    )
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["meeting_id"].startswith("m_") and doc["meeting_id"] != "call-1"
    assert_shape(doc, reference, duration, diarized=False)
    assert set(doc["speakers"]) == {"u-7"}
    assert_stored(server, doc, "upload")


def test_a_url_is_fetched_transcribed_and_answered_in_the_same_shape(server, media, clip):
    _, reference, duration = clip
    reply = call(
        "POST",
        server.url + "/stt/process",
        json={
            "audio_url": media.url("/files/clip.flac"),
            "meeting_id": "fetched-1",
            "user_id": "u-8",
            "language": "en",
            "diarize": False,
        },
    )
    assert reply.status == 200, reply.body
    doc = reply.json()
    assert doc["meeting_id"] == "fetched-1" and doc["user_id"] == "u-8"
    assert_shape(doc, reference, duration, diarized=False)
    assert set(doc["speakers"]) == {"u-8"}
    assert assert_stored(server, doc, "url")["title"] == "clip.flac"
    assert "/files/clip.flac" in media.requests


def test_a_background_url_job_is_followed_to_its_meeting(server, media, clip):
    reply = call(
        "POST",
        server.url + "/stt/process",
        json={"audio_url": media.url("/files/clip.flac"), "background": True, "diarize": "false", "language": "en"},
    )
    assert reply.status == 202, reply.body
    job = reply.json()
    assert reply.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["kind"] == "process" and job["tenant"] == "local"
    assert job["params"]["source"] == media.url("/files/clip.flac")
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "done" and done["progress"] == 1 and done["error"] is None, done
    result = done["result"]
    assert result["language"] == "en" and abs(result["duration"] - clip[2]) < 0.5 and result["segments"] >= 1
    meeting = call("GET", f"{server.url}/meetings/{result['meeting_id']}").json()
    assert meeting["source"] == "url" and wer(clip[1], " ".join(s["text"] for s in meeting["segments"])) <= 0.2
    # A background flag a client sends as text.
    reply = call(
        "POST",
        server.url + "/stt/process",
        json={"audio_url": "http://169.254.169.254/", "background": "false"},
    )
    assert reply.status == 403, reply.body


REFUSED = [  # audio_url (str.format'ed with the media server), status, part of the reason
    ("http://169.254.169.254/latest/meta-data/", 403, "link-local"),
    ("http://[::ffff:169.254.169.254]/", 403, "link-local"),
    ("http://10.0.0.1/a.wav", 403, "private"),
    ("http://0x7f.2:{port}/files/clip.flac", 403, "127.0.0.2"),  # 127.0.0.2, not the allowed 127.0.0.1
    ("file:///etc/passwd", 403, "media-root"),
    ("/etc/passwd", 403, "media-root"),
    ("gopher://127.0.0.1/", 400, "only http"),
    ("http://user:pw@127.0.0.1:{port}/files/clip.flac", 400, "user name"),
    ("http://127.0.0.1:{port}/redirect?to=http://169.254.169.254/latest", 403, "redirect"),
    ("http://127.0.0.1:{port}/redirect?to=http://10.1.2.3/", 403, "redirect"),
    ("http://127.0.0.1:{port}/redirect?to=file:///etc/passwd", 400, "redirect"),
    ("http://127.0.0.1:{port}/files/page.wav", 415, "an HTML page"),
    ("http://127.0.0.1:{port}/files/missing.wav", 502, "404"),
]


def test_urls_the_server_must_not_fetch_are_refused_with_the_reason(server, media):
    for template, status, reason in REFUSED:
        url = template.format(port=media.port)
        for background in (False, True):
            reply = call("POST", server.url + "/stt/process", json={"audio_url": url, "background": background})
            if background:
                assert reply.status == 202, (url, reply.body)
                job = wait_for_job(server.url, reply.json()["id"])
                assert job["status"] == "failed" and reason in job["error"], (url, job)
                assert job["result"].get("meeting_id") is None
            else:
                assert reply.status == status, (url, reply.status, reply.body)
                assert reason in reply.error(), (url, reply.error())
                assert reply.json()["error"]["job_id"].startswith("j_")
            assert healthy(server.url)
    # Nothing refused was fetched: only the allowed server's redirects and files were asked.
    assert all(r.startswith(("/redirect", "/files/")) for r in media.requests), media.requests


def test_loopback_is_refused_where_the_operator_allowed_nothing(engine, database, media):
    with meeting_server(engine, database) as strict:
        reply = call("POST", strict.url + "/stt/process", json={"audio_url": media.url("/files/clip.flac")})
        assert reply.status == 403, reply.body
        assert "loopback" in reply.error() and "--allow-fetch" in reply.error()
        assert healthy(strict.url)


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"not json", 400, "not JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 400, "audio_url"),
        (b'{"audio_url": ""}', 400, "audio_url"),
        (b'{"audio_url": "http://a.example/x.wav", "meeting_id": "-x"}', 400, "meeting id"),
        (b'{"audio_url": "http://a.example/x.wav", "language": "klingon"}', 400, "language"),
        (b'{"audio_url": "http://a.example/x.wav", "tenant_id": 5}', 400, "tenant"),
        (b'{"audio_url": "http://a.example/x.wav", "num_speakers": "many"}', 400, "num_speakers"),
    ],
)
def test_bad_process_requests_are_400s(server, body, status, message):
    reply = call("POST", server.url + "/stt/process", data=body, headers={"Content-Type": "application/json"})
    assert reply.status == status, (body, reply.body)
    assert message in reply.error()


def test_stt_status(server):
    status = call("GET", server.url + "/stt/status").json()
    assert status["status"] == "ok" and status["records"] is True and status["model"]
    assert status["jobs"] == {"running": 0} and status["live_streams"] == 0


# -- /stt/realtime ---------------------------------------------------------------------------------


class _Socket:
    closed = False

    def __init__(self):
        self.sent: list[dict] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(json.loads(text))


def test_realtime_tells_the_client_of_a_revised_and_a_retracted_segment_once_each():
    async def run() -> list[dict]:
        ws = _Socket()
        session = RealtimeSession(ws, "rt", "local", "m-1", 16000)
        words = [Word(" Printing", 0.5, 1.0, 0.9)]
        session.on_caption(Caption("carol", "S1", "Printing", final=True, start=0.5, end=1.0, words=words))
        session.on_caption(Caption("carol", "S2", "Pips.", final=True, start=1.0, end=1.3, words=words))
        # A second hearing: S1 revised, S2 retracted; an empty final of a segment never pushed says nothing.
        session.on_caption(Caption("carol", "S1", "Printing types.", final=True, start=0.5, end=1.3, revised=True))
        session.on_caption(Caption("carol", "S2", "", final=True, start=1.0, end=1.3, revised=True))
        session.on_caption(Caption("carol", "S3", "", final=True, start=2.0, end=2.0))
        await asyncio.sleep(0)
        assert sorted(session.finals) == ["S1"]  # what session_ended shows without records
        return ws.sent

    sent = asyncio.run(run())
    assert [(m["segment"]["segment_id"], m["segment"]["text"]) for m in sent] == [
        ("S1", "Printing"),
        ("S2", "Pips."),
        ("S1", "Printing types."),
        ("S2", ""),
    ]
    assert all(m["type"] == "transcript" and m["is_final"] for m in sent)
    assert (sent[-1]["segment"]["start"], sent[-1]["segment"]["end"]) == (1.0, 1.3)


def test_realtime_survives_malformed_messages_then_transcribes_a_session(server, clip):
    path, reference, duration = clip
    pcm = pcm16(read_audio(path))
    start = {
        "type": "start_session",
        "session_id": "rt-session",
        "meeting_id": "rt-1",
        "user_id": "carol",
        "language": "en",
        "sample_rate": 16000,
    }
    bad = [
        audio_chunk(pcm[:3200]),  # before start_session
        "not json",
        "[1, 2]",
        '{"type": "dance"}',
        b"\x00\x01",  # audio goes in JSON
        json.dumps({**start, "language": "klingon"}),
        json.dumps({**start, "language": 5}),
        json.dumps({**start, "sample_rate": 5}),
        json.dumps({**start, "meeting_id": "../x"}),
        '{"type": "end_session"}',  # nothing to end
    ]
    started = [
        json.dumps(start),
        json.dumps(start),  # once only
        '{"type": "audio_chunk", "audio": "%%%not base64"}',
        '{"type": "audio_chunk", "audio": "AAE="}',  # 2 bytes: fine
        '{"type": "audio_chunk", "audio": "AAEC"}',  # 3 bytes: not PCM s16le
        '{"type": "audio_chunk"}',
    ]
    audio = [audio_chunk(pcm[i : i + 6400]) for i in range(0, len(pcm), 6400)]
    messages = asyncio.run(realtime(server.url, [*bad, *started, *audio, '{"type": "end_session"}']))

    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == len(bad) + len(started) - 2, errors  # all but the start and the good chunk
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    kinds = [m["type"] for m in messages if m["type"] != "error"]
    assert kinds[0] == "session_started" and kinds[-1] == "session_ended"
    assert set(kinds[1:-1]) <= {"partial_transcript", "transcript"} and "transcript" in kinds
    session_started = next(m for m in messages if m["type"] == "session_started")
    assert session_started == {
        "session_id": "rt-session",
        "type": "session_started",
        "meeting_id": "rt-1",
        "tenant_id": "local",
    }
    finals = [m for m in messages if m["type"] == "transcript"]
    assert all(m["is_final"] and m["meeting_id"] == "rt-1" and m["session_id"] == "rt-session" for m in finals)
    ended = messages[-1]
    assert ended["type"] == "session_ended" and ended["session_id"] == "rt-session"
    assert set(ended) == SHAPE | {"type", "session_id"}
    assert ended["meeting_id"] == "rt-1" and ended["tenant_id"] == "local" and ended["user_id"] == "carol"
    assert ended["has_diarization"] is False and set(ended["speakers"]) == {"carol"}
    # The meeting's segments are what was pushed, each as last pushed: a transcript for a segment
    # id already pushed replaces it (a second hearing's revision; with no text, its retraction).
    pushed = transcripts_as_last_pushed(messages)
    assert [(s["segment_id"], s["text"], s["start"], s["end"]) for s in pushed] == [
        (s["segment_id"], s["text"], s["start"], s["end"]) for s in ended["segments"]
    ]
    assert all(s["speaker"] == "carol" and 0 < s["confidence"] <= 1 and s["language"] == "en" for s in pushed)
    assert wer(reference, ended["transcript"]) <= 0.2, ended["transcript"]
    meeting = call("GET", f"{server.url}/meetings/rt-1").json()
    assert meeting["source"] == "realtime" and meeting["status"] == "ended" and meeting["title"] == "rt-session"
    assert [s["text"] for s in meeting["segments"]] == [s["text"] for s in pushed]
    assert healthy(server.url) and call("GET", server.url + "/stt/status").json()["live_streams"] == 0


def test_a_realtime_client_that_leaves_keeps_what_it_said(server, clip):
    pcm = pcm16(read_audio(clip[0]))
    start = json.dumps({"type": "start_session", "session_id": "gone", "meeting_id": "rt-gone", "language": "en"})
    audio = [audio_chunk(pcm[i : i + 6400]) for i in range(0, len(pcm), 6400)]
    received = asyncio.run(realtime(server.url, [start, *audio], expect=1))  # closes after session_started
    assert received[0]["type"] == "session_started"
    meeting = wait_for_meeting(server.url, "rt-gone")
    assert meeting["segments"] and wer(clip[1], " ".join(s["text"] for s in meeting["segments"])) <= 0.3
    assert {s["participant"] for s in meeting["segments"]} == {"gone"}


def test_a_realtime_meeting_deleted_mid_session_ends_with_an_error_not_a_crash(server, clip):
    pcm = pcm16(read_audio(clip[0]))[: 16000 * 2]
    start = json.dumps({"type": "start_session", "session_id": "del", "meeting_id": "rt-deleted"})

    async def run():
        import aiohttp

        async with aiohttp.ClientSession() as http, http.ws_connect(server.url + "/stt/realtime") as ws:
            await ws.send_str(start)
            assert json.loads((await ws.receive()).data)["type"] == "session_started"
            async with http.delete(server.url + "/meetings/rt-deleted") as deleted:
                assert deleted.status == 200
            await ws.send_str(audio_chunk(pcm))
            await ws.send_str('{"type": "end_session"}')
            return [json.loads(m.data) async for m in ws if m.type is aiohttp.WSMsgType.TEXT]

    messages = asyncio.run(run())
    assert messages[-1]["type"] == "error" and "deleted" in messages[-1]["message"], messages
    assert call("GET", server.url + "/meetings/rt-deleted").status == 404
    assert healthy(server.url)


def test_realtime_on_a_server_without_records_captions_and_keeps_nothing(engine, clip):
    from roomscribe.web.config import ServerConfig
    from support.serving import running_server

    pcm = pcm16(read_audio(clip[0]))
    start = json.dumps({"type": "start_session", "session_id": "rt-session", "meeting_id": "rt-off", "language": "en"})
    audio = [audio_chunk(pcm[i : i + 6400]) for i in range(0, len(pcm), 6400)]
    with running_server(engine, ServerConfig(port=0, records=False)) as off:
        messages = asyncio.run(realtime(off.url, [start, *audio, json.dumps({"type": "end_session"})]))
        assert call("GET", off.url + "/meetings").status == 501  # nothing kept, and it says so
    finals = transcripts_as_last_pushed(messages)
    ended = messages[-1]
    assert ended["type"] == "session_ended" and ended["meeting_id"] == "rt-off"
    assert [s["segment_id"] for s in ended["segments"]] == [s["segment_id"] for s in finals] and finals
    assert wer(clip[1], ended["transcript"]) <= 0.3
