"""Background transcription jobs on `roomscribe serve`, on SQLite and on PostgreSQL: a URL job
followed from queued to done and its meeting; a job goes on when the client waiting for it
leaves; a server that stops mid-job, and one that restarts after dying with jobs running,
leaves no job `running` forever; bad job requests are 400s."""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import pytest

from support.meetings import (
    DATABASES,
    call,
    fresh_database,
    healthy,
    media_files,
    meeting_server,
    store_of,
    wait_for_job,
    wait_for_meeting,
)
from support.speech import wer


@pytest.fixture(scope="module", params=DATABASES)
def database(request, tmp_path_factory):
    yield from fresh_database(request, tmp_path_factory)


@pytest.fixture(scope="module")
def media(clip):
    with media_files({"clip.flac": clip[0].read_bytes()}) as served:
        yield served


@pytest.fixture(scope="module")
def server(engine, database):
    with meeting_server(engine, database, allow_fetch=("127.0.0.1/32",)) as running:
        yield running


def test_a_url_job_goes_from_queued_to_done_with_its_meeting(server, media, clip):
    _, reference, duration = clip
    reply = call(
        "POST",
        server.url + "/jobs",
        json={
            "url": media.url("/files/clip.flac"),
            "meeting_id": "job-1",
            "user_id": "dave",
            "language": "en",
            "diarize": False,
        },
    )
    assert reply.status == 202, reply.body
    job = reply.json()
    assert reply.headers["Location"] == f"/jobs/{job['id']}"
    assert job["status"] == "queued" and job["kind"] == "transcribe" and job["meeting_id"] == "job-1"
    assert job["params"] == {
        "source": media.url("/files/clip.flac"),
        "meeting_id": "job-1",
        "user_id": "dave",
        "language": "en",
        "task": "transcribe",
        "diarize": False,
        "translate_to": [],
    }
    done = wait_for_job(server.url, job["id"])
    assert done["status"] == "done" and done["progress"] == 1 and done["error"] is None, done
    progress = [p for _, p in done["seen"]]
    assert progress == sorted(progress)
    assert done["result"]["meeting_id"] == "job-1" and done["result"]["language"] == "en"
    assert abs(done["result"]["duration"] - duration) < 0.5 and done["result"]["processing_time"] > 0
    assert done["updated_at"] >= done["created_at"]
    meeting = call("GET", server.url + "/meetings/job-1").json()
    assert meeting["source"] == "url" and meeting["user_id"] == "dave" and meeting["title"] == "clip.flac"
    assert meeting["status"] == "ended" and len(meeting["segments"]) == done["result"]["segments"]
    assert {s["participant"] for s in meeting["segments"]} == {"dave"}
    assert all(s["words"] and s["confidence"] for s in meeting["segments"])
    assert wer(reference, " ".join(s["text"] for s in meeting["segments"])) <= 0.2


def test_a_job_goes_on_when_its_client_leaves(server, media, clip):
    async def leave_early():
        timeout = aiohttp.ClientTimeout(total=0.3)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            with pytest.raises(asyncio.TimeoutError):
                async with http.post(
                    server.url + "/stt/process",
                    json={"audio_url": media.url("/files/clip.flac"), "meeting_id": "left-1", "diarize": False},
                ) as response:
                    await response.read()

    asyncio.run(leave_early())
    meeting = wait_for_meeting(server.url, "left-1")
    assert meeting["source"] == "url" and wer(clip[1], " ".join(s["text"] for s in meeting["segments"])) <= 0.2
    deadline = time.monotonic() + 10
    while call("GET", server.url + "/stt/status").json()["jobs"]["running"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert healthy(server.url)


def test_a_restarted_server_fails_the_jobs_it_left_running(engine, server, database):
    store = store_of(server)
    ours = f"{socket.gethostname()}:0"  # the owner of a server on this host and port (0 in tests)
    running = store.create_job("local", "transcribe", params={"source": "https://example.com/a.wav"}, owner=ours)
    store.update_job(running.id, status="running", progress=0.4)
    queued = store.create_job("local", "transcribe", owner=ours)
    finished = store.create_job("local", "transcribe", owner=ours)
    store.update_job(finished.id, status="done", progress=1.0, result={"meeting_id": "x"})
    elsewhere = store.create_job("local", "transcribe", owner="another-host:8000")
    store.update_job(elsewhere.id, status="running")

    with meeting_server(engine, database) as restarted:
        for job in (running, queued):
            got = call("GET", f"{restarted.url}/jobs/{job.id}").json()
            assert got["status"] == "failed" and "restarted" in got["error"], got
        assert call("GET", f"{restarted.url}/jobs/{running.id}").json()["progress"] == 0.4
        assert call("GET", f"{restarted.url}/jobs/{finished.id}").json()["status"] == "done"
        # Another server's job is that server's business.
        assert call("GET", f"{restarted.url}/jobs/{elsewhere.id}").json()["status"] == "running"


def test_a_server_that_stops_mid_job_marks_it_failed(engine, server, database, media):
    with meeting_server(engine, database, allow_fetch=("127.0.0.1/32",)) as stopping:
        reply = call("POST", stopping.url + "/jobs", json={"url": media.url("/slow")})
        assert reply.status == 202
        job_id = reply.json()["id"]
        deadline = time.monotonic() + 10
        while call("GET", f"{stopping.url}/jobs/{job_id}").json()["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
    job = store_of(server).get_job("local", job_id)
    assert job.status == "failed" and job.error == "the server stopped", job


@pytest.mark.parametrize(
    "body, message",
    [
        (b"not json", "not JSON"),
        (b'"a string"', "JSON object"),
        (b"{}", "url"),
        (b'{"url": "   "}', "url"),
        (b'{"url": 5}', "url"),
        (b'{"url": "https://a.example/x.wav", "meeting_id": "no spaces"}', "meeting id"),
        (b'{"url": "https://a.example/x.wav", "language": "xx-nope"}', "language"),
        (b'{"url": "https://a.example/x.wav", "task": "summarise"}', "task"),
        (b'{"url": "https://a.example/x.wav", "tenant_id": "bad/name"}', "tenant"),
        (b'{"url": "https://a.example/x.wav", "min_speakers": 3, "max_speakers": 2}', "speakers"),
    ],
)
def test_bad_job_requests_are_400s(server, body, message):
    reply = call("POST", server.url + "/jobs", data=body, headers={"Content-Type": "application/json"})
    assert reply.status == 400, (body, reply.status, reply.body)
    assert message in reply.error()


def test_an_unknown_job_is_404(server):
    for job_id in ("j_nothing", "x" * 300, "..%2F..%2Fetc"):
        reply = call("GET", f"{server.url}/jobs/{job_id}")
        assert reply.status == 404, (job_id, reply.body)
