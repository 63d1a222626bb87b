"""The page's HTTP doors refuse bad offers and requests clearly, and the server speaks TLS
when given a certificate."""

from __future__ import annotations

import asyncio
import datetime
import http.client
import ssl
import urllib.request

import aiohttp
import pytest
from aiohttp import web

from roomscribe.session.scheduler import worker_for
from roomscribe.web.app import build_app, ssl_context
from roomscribe.web.config import ServerConfig

MINIMAL_AUDIO_OFFER = "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def _call(method: str, url: str, **kwargs) -> tuple[int, dict | str]:
    async def go():
        async with aiohttp.ClientSession() as http, http.request(method, url, **kwargs) as response:
            kind = response.content_type
            return response.status, (await response.json() if kind == "application/json" else await response.text())

    return asyncio.run(go())


@pytest.mark.parametrize(
    "query, body, content_type, status, message",
    [
        ("", "v=0", "application/json", 415, "Content-Type: application/sdp"),
        ("", "v=0\r\ns=-\r\n", "application/sdp", 400, "no audio"),
        ("", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "could not use the SDP offer"),
        ("?session=../../etc", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "session id"),
        ("?language=xx", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "unknown language"),
        ("?policy=fast", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "unknown policy"),
        ("?diarize=perhaps", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "diarize must be true or false"),
        ("?diarize=true&num_speakers=0", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "at least 1"),
        ("?read=xx", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "read: unknown language 'xx'"),
        ("?read=es,ko", MINIMAL_AUDIO_OFFER, "application/sdp", 400, "read is the one language"),
        ("", "m=audio " + "x" * 70000, "application/sdp", 413, "too large"),
    ],
)
def test_a_bad_offer_gets_a_clear_error_and_leaves_no_participant(server, query, body, content_type, status, message):
    from roomscribe.web.keys import PEERS_KEY

    peers_before = server.call(lambda: set(server.app[PEERS_KEY]))
    got, answer = _call("POST", f"{server.url}/whip{query}", data=body.encode(), headers={"Content-Type": content_type})
    assert got == status and message in answer["error"]["message"]
    assert server.call(lambda: set(server.app[PEERS_KEY])) <= peers_before  # nobody joined, or stayed


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("DELETE", "/whip/P_unknown", 404),
        ("GET", "/sessions/nope/transcript", 404),
    ],
)
def test_unknown_participants_and_sessions_are_404(server, method, path, status):
    got, body = _call(method, server.url + path)
    assert got == status and body["error"]["code"] == status


def test_a_transcript_in_an_unknown_format_is_refused(server):
    from roomscribe.web.keys import SESSIONS_KEY

    session = server.call(lambda: server.app[SESSIONS_KEY].open("fmt-test"))
    got, body = _call("GET", f"{server.url}/sessions/{session.id}/transcript?format=docx")
    assert got == 400 and "txt, srt, vtt, json" in body["error"]["message"]
    got, text = _call("GET", f"{server.url}/sessions/{session.id}/transcript?format=vtt")
    assert got == 200 and text.startswith("WEBVTT")


def _self_signed(tmp_path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(certfile), str(keyfile)


def test_the_server_speaks_https_with_the_given_certificate(engine, tmp_path):
    certfile, keyfile = _self_signed(tmp_path)
    config = ServerConfig(certfile=certfile, keyfile=keyfile)

    async def serve_and_ask():
        runner = web.AppRunner(build_app(config, worker_for(engine)))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(config))
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        trust = ssl.create_default_context(cafile=certfile)
        trust.check_hostname = False
        try:

            def ask(url, context=None):
                with urllib.request.urlopen(url, context=context, timeout=10) as response:
                    return response.status, response.read()

            status, body = await asyncio.to_thread(ask, f"https://127.0.0.1:{port}/health", trust)
            with pytest.raises((OSError, http.client.HTTPException)):  # plain http to a TLS port gets nowhere
                await asyncio.to_thread(ask, f"http://127.0.0.1:{port}/health")
            return status, body
        finally:
            await runner.cleanup()

    assert asyncio.run(serve_and_ask()) == (200, b'{"status": "ok"}')


@pytest.mark.parametrize(
    "message, reply",
    [
        ('{"type": "ping", "t": 7}', {"type": "pong", "t": 7}),
        ('{"type": "set_language", "language": "ko"}', {"type": "language", "language": "ko"}),
        ('{"type": "set_language", "language": "auto"}', {"type": "language", "language": "auto"}),
        ('{"type": "set_language", "language": "xx"}', "unknown language 'xx'"),
        ('{"type": "dance"}', "unknown message type 'dance'"),
        ("not json", "not JSON"),
        ("[1, 2]", "a JSON object with a 'type'"),
    ],
)
def test_data_channel_control_messages_get_an_answer_or_a_clear_error(message, reply):
    from roomscribe.web.sessions import Session
    from roomscribe.web.webrtc import _control

    participant = Session("ctl").join("ann")
    sent = []
    participant.send = sent.append
    _control(participant, message)
    (answer,) = sent
    if isinstance(reply, dict):
        assert answer == reply
    else:
        assert answer["type"] == "error" and reply in answer["message"]
