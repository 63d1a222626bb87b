"""/asr given bad options, junk audio, bad messages, vanishing clients and too many streams."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import time

import aiohttp
import numpy as np
import pytest

from support.asr import (
    assert_finished,
    chunks,
    decode_threads,
    encode,
    get_json,
    server_status,
    talk,
    wait_until_idle,
)
from support.serving import running_server
from support.speech import wer


@pytest.mark.parametrize(
    "query,message",
    [
        ("language=xx", "unknown language"),
        ("policy=nope", "unknown policy"),
        ("mode=x", "mode is full or diff"),
        ("input=wav", "input is auto, pcm or encoded"),
        ("task=summarize", "unknown task"),
        ("prompt=" + "x" * 501, "at most 500"),
        ("translate_to=xx", "translate_to: unknown language 'xx'"),
        ("translate_to=es,klingon", "translate_to: unknown language 'klingon'"),
        ("translate_to=auto", "translate_to: a translation language must be a language, not 'auto'"),
        ("translate_to=en,ko,es,fr,de,ja,zh", "translate_to: at most 6 translation languages"),
    ],
)
def test_bad_query_options_are_refused_with_400_before_upgrading(server, query, message):
    async def attempt():
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(f"{server.url}/asr?{query}")
            # The same request by hand: a JSON error body, and no 101.
            key = base64.b64encode(os.urandom(16)).decode()
            headers = {
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": key,
            }
            async with http.get(f"{server.url}/asr?{query}", headers=headers) as response:
                return refused.value.status, response.status, response.content_type, await response.json()

    handshake, status, kind, body = asyncio.run(attempt())
    assert handshake == 400 and status == 400 and kind == "application/json"
    assert message in body["error"]["message"] and body["error"]["code"] == 400
    assert server_status(server.url)["asr_connections"] == 0


def test_a_plain_http_get_on_asr_is_told_it_is_a_websocket(server):
    status, body = asyncio.run(get_json(server.url, "/asr"))
    assert status == 426 and "WebSocket" in body["error"]["message"]


# -- bad input never hurts the server -------------------------------------------------------------


@pytest.mark.parametrize("head", [b"OggS", b"\x1a\x45\xdf\xa3", b"fLaC"], ids=["ogg", "webm", "flac"])
def test_junk_behind_a_container_header_gets_an_error_and_a_clean_close(server, speech_short, head):
    junk = head + np.random.default_rng(7).bytes(6000)
    conv = talk(server.url, [junk[:3000], junk[3000:]], timeout=20)
    assert conv.messages[0]["type"] == "config"
    assert len(conv.errors) == 1 and "could not decode the audio stream" in conv.errors[0]
    assert {"type": "ready_to_stop"} not in conv.messages
    assert conv.close_code == 1007
    wait_until_idle(server.url)
    assert decode_threads() == 0
    after = talk(server.url, chunks(speech_short.pcm, 3200), interval=0.02)
    assert_finished(after)
    assert wer(speech_short.text, after.text()) <= 0.25


def test_pcm_sent_as_encoded_input_is_refused_with_an_error(server, speech_short):
    conv = talk(server.url, chunks(speech_short.pcm, 3200)[5:10], query="?input=encoded", timeout=20)
    assert conv.messages[0] == {"type": "config", "useAudioWorklet": False, "mode": "full"}
    assert len(conv.errors) == 1 and "not a supported audio stream" in conv.errors[0]
    assert conv.close_code == 1003
    wait_until_idle(server.url)


def test_malformed_text_messages_get_an_error_and_the_stream_goes_on(server, speech_short):
    frames = chunks(speech_short.pcm, 3200)
    half = len(frames) // 2
    frames = (
        frames[:half]
        + ["{not json", "[1, 2]", json.dumps({"type": "dance"}), json.dumps({"type": "set_language", "language": "xx"})]
        + frames[half:]
    )
    conv = talk(server.url, frames, interval=0.02)
    assert len(conv.errors) == 4 and all(e.startswith("bad message") for e in conv.errors)
    assert "unknown message type 'dance'" in conv.errors[2] and "unknown language" in conv.errors[3]
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    assert conv.messages[-2]["remaining_time_transcription"] == 0.0
    text = " ".join(line["text"] for line in conv.messages[-2]["lines"])
    assert wer(speech_short.text, text) <= 0.25, text


def test_a_stop_message_ends_the_audio_like_the_empty_frame(server, speech_short):
    frames = chunks(speech_short.pcm, 3200) + [json.dumps({"type": "stop"})]
    conv = talk(server.url, frames, interval=0.02, end=False)
    assert_finished(conv)
    assert wer(speech_short.text, conv.text()) <= 0.25


def test_odd_length_pcm_chunks_are_stitched_back_into_samples(server, speech_short):
    data = speech_short.pcm
    sizes = [1, 3201, 2999, 777, 1023]
    frames, i, k = [], 0, 0
    while i < len(data):
        frames.append(data[i : i + sizes[k % len(sizes)]])
        i += sizes[k % len(sizes)]
        k += 1
    conv = talk(server.url, frames, interval=0.01)
    assert_finished(conv)
    error = wer(speech_short.text, conv.text())
    assert error <= 0.25, conv.text()


def test_pcm_chunks_that_happen_to_start_like_a_container_stay_pcm(server, speech_short):
    """Only the first bytes choose PCM or a decoder; later PCM that starts with 'OggS' or
    'ID3' (valid, if loud, samples) must not switch the stream to a decoder."""
    frames = chunks(speech_short.pcm, 3200)
    for i, magic in zip((3, 8, 13, 20), (b"OggS", b"ID3\x04", b"\x1a\x45\xdf\xa3", b"fLaC")):
        frames[i] = magic + frames[i][len(magic) :]
    conv = talk(server.url, frames, interval=0.02)
    assert_finished(conv)
    assert wer(speech_short.text, conv.text()) <= 0.25, conv.text()


async def raw_websocket(url: str, path: str):
    """A WebSocket opened by hand, so that the test can drop its TCP connection."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def ws_frame(payload: bytes) -> bytes:
    """A masked binary frame, as a client sends it."""
    mask = os.urandom(4)
    n = len(payload)
    head = bytes([0x82]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    body = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + body.tobytes()


@pytest.mark.parametrize(
    "how", ["close-without-end", "tcp-drop", "tcp-drop-while-decoding-webm", "tcp-drop-right-after-the-end-frame"]
)
def test_a_client_that_vanishes_mid_stream_is_freed_and_the_next_one_is_served(
    server, speech_short, tmp_path, how, caplog
):
    if how.endswith("webm"):
        payload = encode(speech_short.wav, tmp_path / "speech.webm", "-c:a", "libopus")
    else:
        payload = speech_short.pcm

    async def vanish() -> dict:
        pieces = chunks(payload, 1000 if how.endswith("webm") else 3200)[:12]  # about 3 s of audio
        if how == "close-without-end":
            async with aiohttp.ClientSession() as http:
                ws = await http.ws_connect(f"{server.url}/asr")
                for piece in pieces:
                    await ws.send_bytes(piece)
                    await asyncio.sleep(0.05)
                await asyncio.sleep(0.5)
                during = (await get_json(server.url, "/status"))[1]
                await ws.close()  # a close frame, but no end of audio
                return during
        _reader, writer = await raw_websocket(server.url, "/asr")
        for piece in pieces:
            writer.write(ws_frame(piece))
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        during = (await get_json(server.url, "/status"))[1]
        if how.endswith("end-frame"):
            writer.write(ws_frame(b""))  # the server goes on to caption the tail for nobody
            await writer.drain()
        writer.transport.abort()  # no close frame, no FIN handshake: the connection is just gone
        return during

    during = asyncio.run(vanish())
    assert during["asr_connections"] == 1 and during["scheduler"]["streams"] == 1
    wait_until_idle(server.url, timeout=5.0)
    deadline = time.monotonic() + 5
    while decode_threads() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert decode_threads() == 0
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []  # not a server fault
    after = talk(server.url, chunks(speech_short.pcm, 3200), interval=0.02)
    assert_finished(after)
    assert wer(speech_short.text, after.text()) <= 0.25


def test_streams_over_the_live_limit_get_503_and_the_slot_frees_when_one_ends(engine, speech_short):
    from roomscribe.web.config import ServerConfig

    with running_server(engine, ServerConfig(port=0, max_live_streams=1)) as small:

        async def scenario():
            async with aiohttp.ClientSession() as http:
                first = await http.ws_connect(f"{small.url}/asr")
                assert (await first.receive_json())["type"] == "config"
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{small.url}/asr")
                await first.send_bytes(b"")
                while (await first.receive_json()).get("type") != "ready_to_stop":
                    pass
                await first.close()
            return refused.value.status

        assert asyncio.run(scenario()) == 503
        wait_until_idle(small.url)
        conv = talk(small.url, chunks(speech_short.pcm, 3200)[:10])
        assert_finished(conv)
