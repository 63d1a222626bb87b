"""Speakers through the live doors: `/asr?diarization=true` as WhisperLiveKit clients read it."""

from __future__ import annotations

import collections

import pytest

from support.asr import assert_finished, assert_well_formed, chunks, pcm16, talk
from support.voices import voice_of_text


@pytest.mark.usefixtures("diarization_extra")
def test_asr_numbers_the_voices_of_a_mixed_stream_in_its_lines(server, mixed_track):
    conv = talk(server.url, chunks(pcm16(mixed_track.audio), 3200), query="?diarization=true&language=en")
    assert_well_formed(conv, diarized=True)
    assert_finished(conv)
    final = conv.messages[-2]
    assert final["buffer_diarization"] == ""
    lines = [line for line in final["lines"] if line["text"].strip()]
    numbers = {line["speaker"] for line in lines}
    assert numbers == {1, 2}, lines
    # Each voice keeps its number: a line's number is that of the voice speaking mid-line.
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in lines:
        voice = voice_of_text(line["text"])
        if voice:
            seen[voice][line["speaker"]] += 1
    own = {voice: c.most_common(1)[0][0] for voice, c in seen.items()}
    assert len(set(own.values())) == 2, seen


def test_asr_without_diarization_says_speaker_1_everywhere(server, mixed_track):
    conv = talk(server.url, chunks(pcm16(mixed_track.audio[: 16000 * 8]), 3200), query="?language=en")
    final = conv.messages[-2]
    assert final["lines"] and {line["speaker"] for line in final["lines"]} == {1}


def test_asr_refuses_bad_diarization_options_before_the_socket_opens(server):
    import asyncio

    import aiohttp

    async def get(query: str):
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/asr{query}") as response:
            return response.status, await response.json(content_type=None)

    status, body = asyncio.run(get("?diarization=sometimes"))
    assert status == 400 and "diarization must be true or false" in body["error"]["message"]
    status, body = asyncio.run(get("?diarization=true&max_speakers=99"))
    assert status == 400 and "max_speakers must be at most" in body["error"]["message"]


@pytest.mark.usefixtures("diarization_extra")
def test_the_plugin_declares_diarization_and_fills_speaker_id(engine, mixed_track):
    pytest.importorskip("livekit.agents")
    import asyncio

    from livekit.agents import stt as lkstt

    from livekit.plugins import roomscribe
    from support.livekit_frames import frames_48k

    stt = roomscribe.STT(engine=engine, diarization=True, language="en")
    assert stt.capabilities.diarization is True
    assert roomscribe.STT(engine=engine).capabilities.diarization is False

    async def run() -> list:
        stream = stt.stream()
        events = []

        async def read():
            async for ev in stream:
                events.append(ev)

        reader = asyncio.create_task(read())
        for frame in frames_48k(mixed_track.audio):
            stream.push_frame(frame)
        stream.end_input()
        await asyncio.wait_for(reader, timeout=180)
        await stream.aclose()
        return events

    events = asyncio.run(run())
    finals = [e.alternatives[0] for e in events if e.type is lkstt.SpeechEventType.FINAL_TRANSCRIPT]
    finals = [f for f in finals if f.text.strip()]
    assert finals and all(f.speaker_id in ("S1", "S2") for f in finals)
    by_voice = {voice_of_text(f.text): f.speaker_id for f in finals if voice_of_text(f.text)}
    assert set(by_voice) == {"Allison", "LJ"} and len(set(by_voice.values())) == 2
