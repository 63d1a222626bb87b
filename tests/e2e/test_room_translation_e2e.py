"""Translated captions end to end: the real worker and SDK against the LiveKit protocol
emulator, translating on the real local model. An English speaker is read in Korean and a
Korean speaker in English; a control message changes the room's languages.

There is no recorded Korean speech here: the Korean speaker is espeak-ng's Korean voice,
which Whisper base hears only roughly. The test checks that the Korean speaker is captioned
in Korean and translated into English, not what the words are."""

from __future__ import annotations

import asyncio
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("aiortc")

from test_room_e2e import FINAL, TOPIC, caption_room, speech

from roomscribe.audio import load_audio

pytestmark = pytest.mark.usefixtures("translate_extra")


def hangul(text: str) -> bool:
    return any("\uac00" <= ch <= "\ud7a3" for ch in text)


def korean_speech(tmp_path) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = tmp_path / "ko.wav"
    text = "안녕하세요. 오늘 회의를 시작하겠습니다. 먼저 지난주 일정을 확인하겠습니다."
    subprocess.run(["espeak-ng", "-v", "ko", "-s", "130", "-w", str(wav), text], check=True, capture_output=True)
    audio = load_audio(wav)  # espeak speaks at 22 kHz
    return np.concatenate([audio, np.zeros(int(1.5 * 16000), np.float32)])


def test_each_speaker_is_captioned_in_their_language_and_translated_into_the_other(
    emulator_host, eval_dir, monkeypatch, tmp_path
):
    korean = korean_speech(tmp_path)

    def translations(emu, identity: str, language: str) -> list:
        return [
            r
            for r in emu.recorder.streams(TOPIC, sender_identity=identity, **FINAL)
            if r.attributes.get("roomscribe.translation_of") and r.attributes["roomscribe.language"] == language
        ]

    async def scenario():
        async with caption_room(emulator_host, monkeypatch) as emu:
            await (await emu.create_dispatch("bilingual", "roomscribe", '{"translate": ["en", "ko"]}')).wait()
            await emu.recorder.wait_for(lambda _: any(p.is_agent for p in emu.participants("bilingual")), 20)
            alice = await emu.add_speaker("bilingual", "alice", speech(eval_dir, "LJ001-0009"))
            await alice.wait_started()
            await emu.add_speaker("bilingual", "minji", korean, attributes={"roomscribe.language": "ko"})
            await emu.recorder.wait_for(
                lambda _: translations(emu, "alice", "ko") and translations(emu, "minji", "en"), 90
            )
            # The room now reads French only: the next speaker is translated into French alone.
            await emu.send_data(
                "bilingual", "alice", b'{"type": "set_translation", "languages": ["fr"]}', "roomscribe.control"
            )
            await asyncio.sleep(0.5)
            await emu.add_speaker("bilingual", "bob", speech(eval_dir, "LJ001-0147"))
            await emu.recorder.wait_for(lambda _: translations(emu, "bob", "fr"), 90)
            await asyncio.sleep(2.0)
            return emu, alice

    emu, alice = asyncio.run(scenario())
    captions = {
        who: [
            r
            for r in emu.recorder.streams(TOPIC, sender_identity=who, **FINAL)
            if "roomscribe.translation_of" not in r.attributes
        ]
        for who in ("alice", "minji", "bob")
    }
    # Captions in each speaker's own language.
    assert {r.attributes["roomscribe.language"] for r in captions["alice"]} == {"en"}
    assert {r.attributes["roomscribe.language"] for r in captions["minji"]} == {"ko"}
    assert any(hangul(r.text) for r in captions["minji"])
    # Alice read in Korean: tied to her caption by track and caption segment, under a segment
    # id of its own (frontends keep one entry per lk.segment_id).
    (first, *_) = translations(emu, "alice", "ko")
    assert first.attributes["roomscribe.translation_of"] == "en"
    assert first.attributes["lk.transcribed_track_id"] == alice.track_sid
    caption_segments = {r.attributes["lk.segment_id"] for r in captions["alice"]}
    assert first.attributes["roomscribe.caption_segment_id"] in caption_segments
    assert first.attributes["lk.segment_id"] == first.attributes["roomscribe.caption_segment_id"] + "-ko"
    assert hangul(first.text) and "printing" not in first.text.lower()
    # Minji read in English; nobody is translated into their own language.
    english = translations(emu, "minji", "en")
    assert english and all(not hangul(r.text) and r.attributes["roomscribe.translation_of"] == "ko" for r in english)
    assert not translations(emu, "alice", "en") and not translations(emu, "minji", "ko")
    # After set_translation: French only.
    assert translations(emu, "bob", "fr") and not translations(emu, "bob", "ko")
