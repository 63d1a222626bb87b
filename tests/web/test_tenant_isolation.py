"""Tenants on one `roomscribe serve`, on SQLite and on PostgreSQL: two tenants' keys crossing
each other on every route that reads or writes records (each refused: 404 for the other's
meetings, jobs and page sessions, 403 for naming the other tenant), the admin key acting for
either, and when keys are needed at all (every data route once a key exists, on loopback
too; none on a private server without keys)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from roomscribe.web.keys import SESSIONS_KEY
from support.asr import chunks, converse, pcm16
from support.meetings import (
    ADMIN_KEY,
    DATABASES,
    auth,
    call,
    fresh_database,
    healthy,
    meeting_server,
    realtime,
    store_of,
    wait_for_job,
)
from support.speech import read_audio, wer
from support.uploads import form, silent_wav


@pytest.fixture(scope="module", params=DATABASES)
def database(request, tmp_path_factory):
    yield from fresh_database(request, tmp_path_factory)


@pytest.fixture(scope="module")
def shared(engine, database):
    """A server with an admin key and two tenants' keys."""
    with meeting_server(engine, database, api_key=ADMIN_KEY) as server:
        store = store_of(server)
        _, acme = store.create_key("acme", "tests")
        _, globex = store.create_key("globex", "tests")
        yield server, acme, globex


@pytest.fixture(scope="module")
def uploads(shared, clip):
    """Each tenant's meeting: acme's through /transcribe, globex's through /stt/upload."""
    server, acme, globex = shared
    path, reference, _ = clip
    audio = path.read_bytes()
    a = call("POST", server.url + "/transcribe", key=acme, data=form(audio, "a.flac", meeting_id="a-1", language="en"))
    assert a.status == 200, a.body
    assert a.json()["meeting_id"] == "a-1" and a.headers["X-Roomscribe-Meeting"] == "a-1"
    g = call(
        "POST",
        server.url + "/stt/upload",
        key=globex,
        data=form(audio, "g.flac", meeting_id="g-1", tenant_id="globex", language="en", diarize="false"),
    )
    assert g.status == 200, g.body
    assert g.json()["meeting_id"] == "g-1" and g.json()["tenant_id"] == "globex"
    assert wer(reference, a.json()["text"]) <= 0.2 and wer(reference, g.json()["transcript"]) <= 0.2
    return "a-1", "g-1"


def test_each_tenant_lists_and_reads_only_its_own_meetings(shared, uploads):
    server, acme, globex = shared
    for key, own, other in ((acme, "a-1", "g-1"), (globex, "g-1", "a-1")):
        listed = call("GET", server.url + "/meetings", key=key).json()
        assert [m["id"] for m in listed["meetings"]] == [own] and listed["total"] == 1
        assert call("GET", f"{server.url}/meetings/{own}", key=key).status == 200
        for path in (
            f"/meetings/{other}",
            f"/meetings/{other}/transcript",
            f"/meetings/{other}/transcript?format=json",
        ):
            reply = call("GET", server.url + path, key=key)
            assert reply.status == 404, (path, reply.body)
            assert other in reply.error()
        assert call("DELETE", f"{server.url}/meetings/{other}", key=key).status == 404
    # The refused deletes deleted nothing.
    for key, own in ((acme, "a-1"), (globex, "g-1")):
        meeting = call("GET", f"{server.url}/meetings/{own}", key=key).json()
        assert meeting["segments_count"] >= 1 and meeting["segments"]


def test_naming_the_other_tenant_is_refused_on_every_route(shared, uploads):
    server, acme, globex = shared
    url = server.url
    attempts = [
        ("GET", "/meetings?tenant_id=globex", {}),
        ("GET", "/meetings/g-1", {"headers": {"X-Roomscribe-Tenant": "globex"}}),
        ("POST", "/transcribe", {"data": form(silent_wav(), "s.wav", tenant_id="globex")}),
        ("POST", "/stt/upload", {"data": form(silent_wav(), "s.wav", tenant_id="globex")}),
        ("POST", "/stt/upload?tenant_id=globex", {"data": form(silent_wav(), "s.wav")}),
        ("POST", "/stt/process", {"json": {"audio_url": "http://example.invalid/a.wav", "tenant_id": "globex"}}),
        ("POST", "/jobs", {"json": {"url": "http://example.invalid/a.wav", "tenant_id": "globex"}}),
        ("POST", "/v1/audio/transcriptions", {"data": form(silent_wav(), "s.wav", model="x", tenant_id="globex")}),
    ]
    for method, path, kwargs in attempts:
        reply = call(method, url + path, key=acme, **kwargs)
        assert reply.status == 403, (path, reply.status, reply.body)
        assert "acme" in reply.error() and "globex" in reply.error()
    # Naming one's own tenant is fine.
    assert call("GET", url + "/meetings", key=acme, tenant="acme").json()["tenant"] == "acme"
    assert call("GET", url + "/meetings?tenant_id=acme", key=acme).json()["tenant"] == "acme"
    # A name no tenant can have is a 400 with the reason, not a 403 or a 500.
    reply = call("GET", url + "/meetings", key=acme, tenant="../etc")
    assert reply.status == 400 and "tenant" in reply.error()
    # Nothing was stored for anyone by the refused requests.
    assert call("GET", url + "/meetings", key=globex).json()["total"] == 1
    assert call("GET", url + "/meetings", key=acme).json()["total"] == 1
    assert healthy(url)


def test_a_meeting_id_names_the_callers_own_meeting_on_asr(shared, uploads, clip):
    """globex streams to /asr with acme's meeting id: it makes globex's own meeting of that id,
    and acme's meeting is untouched."""
    server, acme, globex = shared
    before = call("GET", f"{server.url}/meetings/a-1", key=acme).json()
    pcm = pcm16(read_audio(clip[0]))
    conv = asyncio.run(
        converse(server.url, chunks(pcm, 6400), query="?meeting_id=a-1&name=intruder", headers=auth(globex))
    )
    assert conv.messages[-1] == {"type": "ready_to_stop"}, conv.messages[-3:]
    after = call("GET", f"{server.url}/meetings/a-1", key=acme).json()
    assert after["segments"] == before["segments"] and after["segments_count"] == before["segments_count"]
    own = call("GET", f"{server.url}/meetings/a-1", key=globex).json()
    assert own["tenant"] == "globex" and own["source"] == "asr"
    assert own["segments"] and {s["participant"] for s in own["segments"]} == {"intruder"}
    assert wer(clip[1], " ".join(s["text"] for s in own["segments"])) <= 0.2
    assert [s["text"] for s in own["segments"]] == [line["text"] for line in conv.updates[-1]["lines"]]
    ids = sorted(m["id"] for m in call("GET", server.url + "/meetings", key=globex).json()["meetings"])
    assert ids == ["a-1", "g-1"]
    assert call("GET", server.url + "/meetings", key=acme).json()["total"] == 1
    # Naming the other tenant on the socket is refused before the upgrade.
    refused = call("GET", f"{server.url}/asr?meeting_id=a-1&tenant_id=acme", key=globex)
    assert refused.status == 403


def test_realtime_sessions_are_the_callers_and_refuse_another_tenant(shared, uploads):
    server, acme, globex = shared
    start = '{"type": "start_session", "session_id": "s1", "meeting_id": "a-1", "tenant_id": "acme"}'
    messages = asyncio.run(realtime(server.url, [start], key=globex, expect=1))
    assert messages[0]["type"] == "error" and "globex" in messages[0]["message"]
    assert call("GET", server.url + "/meetings", key=acme).json()["total"] == 1


def test_jobs_are_read_only_by_their_tenant(shared):
    server, acme, globex = shared
    # A URL the server refuses: the job fails at once, without fetching anything.
    reply = call("POST", server.url + "/jobs", key=acme, json={"url": "http://169.254.169.254/latest/meta-data"})
    assert reply.status == 202, reply.body
    job = reply.json()
    assert job["tenant"] == "acme" and job["status"] == "queued"
    assert call("GET", f"{server.url}/jobs/{job['id']}", key=globex).status == 404
    assert call("GET", f"{server.url}/jobs/{job['id']}", key=ADMIN_KEY, tenant="globex").status == 404
    done = wait_for_job(server.url, job["id"], key=acme)
    assert done["status"] == "failed" and "link-local" in done["error"]
    assert call("GET", f"{server.url}/jobs/{job['id']}", key=ADMIN_KEY, tenant="acme").json()["id"] == job["id"]


def test_a_page_session_is_found_only_by_its_tenant(shared):
    server, acme, globex = shared
    sessions = server.app[SESSIONS_KEY]
    server.call(sessions.open, "acme-room", None, None, "acme")
    reply = call("GET", f"{server.url}/sessions/acme-room/transcript", key=globex)
    assert reply.status == 404
    assert call("GET", f"{server.url}/sessions/acme-room/transcript?format=json", key=acme).status == 200
    assert call("GET", f"{server.url}/sessions/acme-room/transcript", key=ADMIN_KEY, tenant="acme").status == 200
    # Each tenant has its own ids: globex's "acme-room" is another session, which tells it
    # nothing of acme's.
    theirs = server.call(sessions.open, "acme-room", None, None, "globex")
    assert theirs is not server.call(sessions.get, "acme-room", "acme") and theirs.tenant == "globex"
    assert server.call(sessions.get, "acme-room", "globex") is theirs


def test_the_admin_key_acts_for_either_tenant(shared, uploads):
    server, acme, globex = shared
    url = server.url
    for tenant, key in (("acme", acme), ("globex", globex)):
        own = call("GET", url + "/meetings", key=key).json()
        as_admin = call("GET", url + "/meetings", key=ADMIN_KEY, tenant=tenant).json()
        assert as_admin == own and own["tenant"] == tenant and own["total"] >= 1
        assert call("GET", url + "/meetings?tenant_id=" + tenant, key=ADMIN_KEY).json() == own
    # Naming no one, the admin acts for the local tenant, which has nothing here.
    assert call("GET", url + "/meetings", key=ADMIN_KEY).json() == {
        "tenant": "local",
        "meetings": [],
        "total": 0,
        "limit": 50,
        "offset": 0,
        "next_offset": None,
    }
    assert call("GET", url + "/meetings/a-1/transcript", key=ADMIN_KEY, tenant="acme").status == 200
    assert call("GET", url + "/meetings/g-1", key=ADMIN_KEY, tenant="acme").status == 404
    # An upload stored for globex by the admin.
    reply = call(
        "POST",
        url + "/stt/upload",
        key=ADMIN_KEY,
        data=form(silent_wav(), "quiet.wav", tenant_id="globex", meeting_id="by-admin", diarize="false"),
    )
    assert reply.status == 200, reply.body
    assert reply.json()["tenant_id"] == "globex"
    assert call("GET", url + "/meetings/by-admin", key=globex).json()["tenant"] == "globex"
    assert call("GET", url + "/meetings/by-admin", key=acme).status == 404
    assert call("DELETE", url + "/meetings/by-admin", key=ADMIN_KEY, tenant="globex").json() == {"deleted": "by-admin"}
    assert call("GET", url + "/meetings/by-admin", key=globex).status == 404
    # A wrong key is no one.
    assert call("GET", url + "/meetings", key="rs_not-a-key").status == 401


# -- when keys are needed -------------------------------------------------------------------------

DATA_ROUTES = [
    ("GET", "/meetings"),
    ("GET", "/meetings/x"),
    ("GET", "/meetings/x/transcript"),
    ("GET", "/meetings/x/audio"),
    ("DELETE", "/meetings/x"),
    ("GET", "/jobs/j_x"),
    ("POST", "/jobs"),
    ("POST", "/stt/upload"),
    ("POST", "/stt/process"),
    ("GET", "/stt/status"),
    ("GET", "/stt/realtime"),
    ("GET", "/asr"),
    ("POST", "/transcribe"),
    ("POST", "/v1/audio/transcriptions"),
    ("GET", "/v1/models"),
    ("GET", "/status"),
    ("GET", "/sessions/x/transcript"),
    ("POST", "/whip"),
]


@pytest.fixture
def fresh_database_url(request, tmp_path):
    """A new database for one test (the key tests change whether a store has keys)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'roomscribe.db'}"
        return
    postgres = request.getfixturevalue("postgres_server")
    url = postgres.create_database()
    yield url
    if postgres.running:
        postgres.drop_database(url)


@pytest.mark.parametrize("fresh_database_url", DATABASES, indirect=True)
def test_a_server_without_keys_has_one_local_tenant_until_a_key_exists(engine, fresh_database_url, clip):
    from openai import OpenAI

    with meeting_server(engine, fresh_database_url) as server:
        url, store = server.url, store_of(server)
        # No key anywhere: the local tenant, whatever key a client sends out of habit.
        assert call("GET", url + "/meetings").json()["tenant"] == "local"
        assert call("GET", url + "/meetings", key="sk-dummy").json()["tenant"] == "local"
        client = OpenAI(base_url=url + "/v1", api_key="sk-dummy", max_retries=0, timeout=120)
        with open(clip[0], "rb") as audio:
            result = client.audio.transcriptions.create(model="whisper-1", file=audio, language="en")
        assert wer(clip[1], result.text) <= 0.2
        local = call("GET", url + "/meetings").json()
        assert local["total"] == 1 and local["meetings"][0]["source"] == "upload"

        key, secret = store.create_key("acme")
        # Now every data route needs a key, on loopback too.
        for method, path in DATA_ROUTES:
            reply = call(method, url + path)
            assert reply.status == 401, (method, path, reply.status, reply.body)
            assert "API key" in reply.error()
            assert call(method, url + path, key="sk-dummy").status == 401, (method, path)
        for path in ("/", "/health"):
            assert call("GET", url + path).status == 200, path
        # The key works, for its own tenant (the local tenant's meeting is not acme's).
        assert call("GET", url + "/meetings", key=secret).json()["total"] == 0
        assert call("GET", url + "/meetings?key=" + secret).json()["tenant"] == "acme"
        assert call("GET", url + "/stt/status", key=secret).json()["records"] is True

        assert store.revoke_key(key.id)
        assert call("GET", url + "/meetings", key=secret).status == 401
        # A revoked key still locks the store: no local tenant comes back.
        assert call("GET", url + "/meetings").status == 401
        assert healthy(url)


@pytest.mark.parametrize(
    "path", ["/static/../meetings", "/static/%2e%2e/meetings", "/health/../meetings", "//meetings", "/./meetings"]
)
def test_public_paths_lead_nowhere_else(shared, path):
    """The paths that need no key (the page, /health, /static/) do not open a data route."""
    server = shared[0]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    assert status in (401, 404), (path, answer[:300])
    assert b'"meetings"' not in answer


# -- while the store is away ----------------------------------------------------------------------


def test_while_postgresql_is_down_keys_cannot_be_checked_but_captions_go_on(engine, postgres_server, speech_short):
    """A private server (no keys) goes on captioning with PostgreSQL down, and what it heard
    is stored once it is back; a keyed server answers 503 (not 500, nor 401) for a key it
    cannot check."""
    private_url, keyed_url = postgres_server.create_database(), postgres_server.create_database()
    try:
        with meeting_server(engine, private_url) as private, meeting_server(engine, keyed_url) as keyed:
            _, secret = store_of(keyed).create_key("acme")
            assert call("GET", private.url + "/meetings").status == 200  # seen without keys
            assert call("GET", keyed.url + "/meetings", key=secret).status == 200  # seen with keys
            postgres_server.stop()
            try:
                conv = asyncio.run(
                    converse(
                        private.url,
                        chunks(speech_short.pcm, 6400),
                        query="?meeting_id=in-the-dark&name=alice",
                        headers=auth("sk-dummy"),
                    )
                )
                assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.updates[-1]["lines"]
                heard = [line["text"] for line in conv.updates[-1]["lines"]]
                reply = call("GET", private.url + "/meetings")
                assert reply.status == 503 and "unavailable" in reply.error()
                for key in (secret, "rs_unknown", None):
                    reply = call("GET", keyed.url + "/meetings", key=key)
                    expected = 401 if key is None else 503  # no key is no key; a key may be good
                    assert reply.status == expected, (key, reply.body)
                    assert "unavailable" in reply.error() or expected == 401
                assert healthy(private.url) and healthy(keyed.url)
            finally:
                postgres_server.start()
            assert call("GET", keyed.url + "/meetings", key=secret).status == 200
            # The captions heard in the dark are stored once the database is back.
            deadline = time.monotonic() + 30
            while (reply := call("GET", private.url + "/meetings/in-the-dark")).status != 200 or [
                s["text"] for s in reply.json()["segments"]
            ] != heard:
                assert time.monotonic() < deadline, reply.body
                time.sleep(0.3)
    finally:
        for url in (private_url, keyed_url):
            postgres_server.drop_database(url)
