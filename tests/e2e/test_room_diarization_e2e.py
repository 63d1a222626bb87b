"""A room with a SIP caller whose line carries two voices, captioned end to end: the real
livekit-agents worker and SDK against the LiveKit protocol emulator."""

from __future__ import annotations

import asyncio
import collections

import numpy as np
import pytest

pytest.importorskip("aiortc")

from test_room_e2e import FINAL, TOPIC, caption_room, caption_text, reference, speech

from support.speech import wer
from support.voices import two_voices, voice_of_text


@pytest.mark.usefixtures("diarization_extra")
def test_a_sip_callers_voices_get_their_own_speaker_labels_under_the_callers_identity(
    emulator_host, eval_dir, manifest, monkeypatch
):
    track = two_voices(eval_dir)
    audio = np.concatenate([track.audio, np.zeros(int(1.5 * 16000), np.float32)])

    async def scenario():
        async with caption_room(emulator_host, monkeypatch) as emu:
            await (await emu.create_dispatch("line", "roomscribe", '{"language": "en"}')).wait()
            await emu.recorder.wait_for(lambda _: any(p.is_agent for p in emu.participants("line")), 20)
            caller = await emu.add_speaker("line", "caller", audio, kind="sip")
            await caller.wait_started()
            # The next participant once the caller's audio flows: published in the same instant,
            # the second of two new participants stayed unsubscribed here (an emulator limit, or
            # the agent's; not yet known).
            await emu.add_speaker("line", "alice", speech(eval_dir, "LJ001-0001"))
            await asyncio.sleep(caller.audio_ends_at - caller.audio_started_at)
            await emu.recorder.wait_for(lambda r: emu.recorder.streams(TOPIC, sender_identity="alice", **FINAL), 30)
            await asyncio.sleep(4.0)
            return emu, caller

    emu, caller = asyncio.run(scenario())
    finals = [r for r in emu.recorder.streams(TOPIC, sender_identity="caller", **FINAL) if r.text.strip()]
    assert finals
    for rec in finals:
        assert rec.attributes["lk.transcribed_track_id"] == caller.track_sid
        assert rec.attributes["roomscribe.speaker"] in ("S1", "S2")
    # The label follows the voice: each reference voice is (mostly) one label, and they differ.
    seen: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for rec in finals:
        voice = voice_of_text(rec.text)
        if voice is not None:
            seen[voice][rec.attributes["roomscribe.speaker"]] += 1
    own = {voice: c.most_common(1)[0][0] for voice, c in seen.items()}
    assert set(own) == {"Allison", "LJ"} and len(set(own.values())) == 2, seen
    # The ordinary participant is one speaker, as always: no label.
    alice = emu.recorder.streams(TOPIC, sender_identity="alice")
    assert alice and all("roomscribe.speaker" not in r.attributes for r in alice)
    assert wer(reference(manifest, "LJ001-0001"), caption_text(emu, "alice")) < 0.3
