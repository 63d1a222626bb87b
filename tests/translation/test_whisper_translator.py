"""The `whisper` translator on the real model: Korean speech heard again and decoded into
English, live (a speaker's final captions, cut from its audio ring) and from a file's
segments; English speech left alone; every other language refused, clearly; the speaker's
audio ring flat in memory.

The Korean speaker is espeak-ng's Korean voice (support.korean_speech), which Whisper base
hears only roughly: the tests check that translations come out in English letters, not their
words."""

from __future__ import annotations

import asyncio
import tracemalloc

import numpy as np
import pytest

import roomscribe.translation as translation
from roomscribe.audio import SAMPLE_RATE, load_audio
from roomscribe.engine import StreamConfig
from roomscribe.session import Caption, LiveSpeaker, Pipeline, worker_for
from roomscribe.session.control import ControlError
from roomscribe.session.formats import segment_captions
from roomscribe.session.scheduler import all_workers
from roomscribe.session.speaker import AudioRing
from roomscribe.session.translation import (
    CAPTION_AUDIO_MARGIN,
    TranslationStage,
    TranslationTargets,
    translate_captions,
)
from roomscribe.translation import (
    TranslationFailedError,
    TranslationRequest,
    TranslationService,
    TranslatorChoice,
    load_translator,
)
from roomscribe.translation.whisper import WhisperTranslator, collapse_loops, echoes
from support.idle_worker import IdleWorker
from support.korean_speech import english_letters, hangul, korean_meeting

TIMEOUT = 60.0  # seconds a translation may take on a slow CI machine


class RecordingWhisper(WhisperTranslator):
    """The real backend, keeping the requests it was given."""

    def __init__(self, engine):
        super().__init__(engine)
        self.requests: list[TranslationRequest] = []

    async def translate(self, request: TranslationRequest) -> str:
        self.requests.append(request)
        return await super().translate(request)


def seconds(audio: np.ndarray | None) -> float:
    return 0.0 if audio is None else len(audio) / SAMPLE_RATE


def test_korean_speech_on_a_live_speaker_is_translated_into_english_from_its_own_audio(engine, tmp_path):
    spoken = korean_meeting(tmp_path)
    translator = RecordingWhisper(engine)
    service = TranslationService(translator, timeout=TIMEOUT)
    out: list[Caption] = []

    async def scenario() -> LiveSpeaker:
        stage = TranslationStage(service, TranslationTargets(["en"]), audio_of=lambda c: speaker.caption_audio(c))
        # An offset, as a page's speaker who joins a session late has: captions and the ring agree on it.
        speaker = LiveSpeaker(
            worker_for(engine),
            StreamConfig(language="ko"),
            name="minji",
            pipeline=Pipeline([stage], [out.append]),
            offset=7.0,
        )
        for chunk in np.array_split(spoken.audio, len(spoken.audio) // 8000):
            speaker.push(chunk)
            await asyncio.sleep(0)
        await speaker.finish()
        await service.drain(TIMEOUT)
        return speaker

    speaker = asyncio.run(scenario())
    service.close()
    captions = [c for c in out if c.final and not c.translated]
    translated = [c for c in out if c.translated]
    assert captions and any(hangul(c.text) for c in captions), [c.text for c in captions]
    assert translated and all(c.final and c.translated == ("en",) for c in translated)  # finals only
    for c in translated:
        assert english_letters(c.translations["en"]), c.translations
        assert c.text == next(f.text for f in captions if f.segment_id == c.segment_id)
    assert {c.segment_id for c in translated} == {c.segment_id for c in captions if c.text.strip()}
    # Each request carried its caption's audio, cut from the speaker's ring on the captions' clock.
    latest = {c.text: c for c in captions}
    for request in translator.requests:
        caption = latest[request.text]
        expected = speaker.audio_between(caption.start - CAPTION_AUDIO_MARGIN, caption.end + CAPTION_AUDIO_MARGIN)
        assert np.array_equal(request.audio, expected)
        assert seconds(request.audio) == pytest.approx(caption.end - caption.start + 2 * CAPTION_AUDIO_MARGIN, abs=0.01)
        assert np.abs(request.audio).max() > 0.05  # speech, not the silence around it
    assert service.status()["failed"] == 0


def test_a_files_segments_are_translated_from_their_spans_and_english_speech_is_left_as_it_is(
    engine, tmp_path, espeak_wav
):
    translator = RecordingWhisper(engine)
    service = TranslationService(translator, timeout=TIMEOUT)
    # The Korean file's segments, where each sentence is (a transcript of espeak's Korean
    # takes Whisper base long, and what matters here is what is cut for each segment).
    spoken = korean_meeting(tmp_path)
    korean = [
        Caption("", f"SG_{i}", text, final=True, start=start, end=end, language="ko")
        for i, (start, end, text) in enumerate(spoken.sentences)
    ]
    asyncio.run(translate_captions(service, korean, TranslationTargets(["en"]), audio=spoken.audio))
    assert all(english_letters(c.translations.get("en", "")) for c in korean), [c.translations for c in korean]
    for request, (start, end, _) in zip(translator.requests, spoken.sentences):
        first = round((start - CAPTION_AUDIO_MARGIN) * SAMPLE_RATE)
        assert np.array_equal(request.audio, spoken.audio[first : first + len(request.audio)])
        assert seconds(request.audio) == pytest.approx(end - start + 2 * CAPTION_AUDIO_MARGIN, abs=0.01)
    # Each segment's request has the ones before it as context (Whisper's prompt).
    assert translator.requests[2].context == tuple((c.text, c.translations["en"]) for c in korean[:2])

    # English speech, transcribed, asked for English: nothing to translate.
    english_audio = load_audio(espeak_wav)
    result = engine.transcribe(english_audio, language="en")
    english = segment_captions(result.segments, language=result.language)
    asked = len(translator.requests)
    asyncio.run(translate_captions(service, english, TranslationTargets(["en"]), audio=english_audio))
    service.close()
    assert english and all(c.text and not c.translations for c in english)
    assert len(translator.requests) == asked


def test_whisper_translates_into_english_only_and_says_so_where_languages_are_set(engine, monkeypatch):
    translator = WhisperTranslator(engine)
    second = np.zeros(SAMPLE_RATE, np.float32)
    with pytest.raises(TranslationFailedError, match=r"only translates into English \(en\), not es"):
        asyncio.run(translator.translate(TranslationRequest("안녕하세요", "ko", "es", audio=second)))
    with pytest.raises(TranslationFailedError, match="translates the caption's audio, and the request has none"):
        asyncio.run(translator.translate(TranslationRequest("안녕하세요", "ko", "en")))

    # Every door sets its languages through TranslationTargets: a process whose translator is
    # whisper refuses the others there, before anything is loaded ...
    monkeypatch.setenv("ROOMSCRIBE_TRANSLATOR", "whisper")
    monkeypatch.setattr(translation, "_loaded", False)
    refused = "the whisper translator only translates into English.*ROOMSCRIBE_TRANSLATOR=llama"
    with pytest.raises(ControlError, match=refused):
        TranslationTargets(["en", "es"])
    assert TranslationTargets(["en"]).languages == ("en",)
    # ... and once it is made (whatever the environment says by then).
    monkeypatch.delenv("ROOMSCRIBE_TRANSLATOR")
    monkeypatch.setattr(translation, "_loaded", True)
    monkeypatch.setattr(translation, "_shared", TranslationService(translator))
    targets = TranslationTargets(["en"])
    with pytest.raises(ControlError, match=refused):
        targets.set(["fr"])
    assert targets.languages == ("en",)  # a refused change leaves the languages as they were


def test_the_whisper_backend_is_chosen_by_name_and_never_loads_a_model_of_its_own(engine):
    choice = TranslatorChoice.from_env({"ROOMSCRIBE_TRANSLATOR": "whisper"})
    assert choice is not None and choice.name == "whisper"
    given = load_translator(choice, engine)
    assert given.engine is engine and given.model == engine.model_name
    assert given.needs_audio and given.targets == ("en",) and given.concurrency == 1
    # Without one given, it translates on the engine the process's scheduler drives.
    worker_for(engine)
    found = load_translator(choice)
    asyncio.run(found.prepare())
    assert any(found.engine is w.engine for w in all_workers())
    for text_backend in ("llama", "openai"):  # they read captions, into any language
        assert not _class_of(text_backend).needs_audio and _class_of(text_backend).targets is None


def _class_of(name: str):
    if name == "llama":
        from roomscribe.translation.llama import LlamaTranslator

        return LlamaTranslator
    from roomscribe.translation.openai_chat import OpenAIChatTranslator

    return OpenAIChatTranslator


def test_a_decoder_loop_is_kept_once_and_a_copy_of_the_prompt_is_told_from_a_translation():
    assert collapse_loops("The monk of the monk of the monk of the monk of the") == "The monk of"
    assert collapse_loops("No, no, I see. Very, very good.") == "No, no, I see. Very, very good."
    assert collapse_loops("Thank you. Thank you.") == "Thank you. Thank you."
    earlier = "Can everyone see my screen? Let's start with last quarter's numbers."
    assert echoes("let's start with last quarter's", earlier)
    assert not echoes("Let's start with the budget.", earlier)
    assert not echoes("Numbers.", earlier)  # a word or two may well be said again


# -- the speaker's audio ring ------------------------------------------------------------------


def test_the_audio_ring_keeps_the_last_seconds_in_flat_memory_and_forgets_the_rest():
    ring = AudioRing(2.0)
    size = ring.nbytes
    ramp = np.arange(5 * SAMPLE_RATE, dtype=np.float32)  # every sample tells where it was
    for chunk in np.array_split(ramp, 37):
        ring.write(chunk)
    assert ring.nbytes == size and ring.total == len(ramp)
    assert np.array_equal(ring.read(4 * SAMPLE_RATE, 5 * SAMPLE_RATE), ramp[4 * SAMPLE_RATE :])
    assert np.array_equal(ring.read(3 * SAMPLE_RATE + 5, 5 * SAMPLE_RATE), ramp[3 * SAMPLE_RATE + 5 :])  # wraps
    assert ring.read(2 * SAMPLE_RATE, 4 * SAMPLE_RATE) is None  # began more than 2 s back: gone
    ring.write(ramp)  # more than it holds at once: the newest 2 s
    assert np.array_equal(ring.read(ring.total - 2 * SAMPLE_RATE, ring.total), ramp[-2 * SAMPLE_RATE :])


def test_a_speakers_audio_is_kept_on_its_captions_clock_and_memory_stays_flat_for_an_hour():
    async def scenario():
        speaker = LiveSpeaker(IdleWorker(), StreamConfig(), name="a", offset=100.0, audio_kept=60.0)
        frame = np.full(SAMPLE_RATE // 10, 0.25, np.float32)
        speaker.push(frame)  # the ring is allocated before the hour starts
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(36_000 - 1):  # an hour of 100 ms frames
            speaker.push(frame)
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert after - before < 1_000_000  # the ring is the same 3.8 MB after an hour
        end = 100.0 + 3600.0
        last = speaker.audio_between(end - 1.0, end)
        assert seconds(last) == pytest.approx(1.0) and np.all(last == 0.25)
        assert speaker.audio_between(end - 61.0, end - 59.0) is None  # no longer kept
        assert speaker.audio_between(100.0, 101.0) is None
        # Paused audio is not kept, but the clock goes on: later audio is where its captions say.
        speaker.set_paused(True)
        speaker.push(np.ones(SAMPLE_RATE, np.float32))
        speaker.set_paused(False)
        speaker.push(np.full(SAMPLE_RATE, 0.5, np.float32))
        assert np.all(speaker.audio_between(end, end + 1.0) == 0.0)
        assert np.all(speaker.audio_between(end + 1.0, end + 2.0) == 0.5)
        # A speaker without a stage that hears captions keeps nothing.
        plain = LiveSpeaker(IdleWorker(), StreamConfig(), name="b")
        plain.push(frame)
        assert plain.audio_between(0.0, 0.1) is None

    asyncio.run(scenario())
