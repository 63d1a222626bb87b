"""The translation stage with a backend that hears captions (`needs_audio`, as `whisper`):
finals carry their audio, cut by the door with a margin, and nothing is sent provisionally;
a backend that reads captions is never given audio; a speaker keeps audio only for a stage
that hears it."""

from __future__ import annotations

import asyncio

import numpy as np

from roomscribe.audio import SAMPLE_RATE
from roomscribe.engine import StreamConfig
from roomscribe.session import Caption, LiveSpeaker, Pipeline
from roomscribe.session.translation import CAPTION_AUDIO_MARGIN, TranslationStage, TranslationTargets, audio_span
from roomscribe.translation import TranslationService
from support.idle_worker import IdleWorker
from support.translators import ScriptedTranslator

CLAUSE = "When the meeting started this morning in the large room,"
TRACK = np.arange(20 * SAMPLE_RATE, dtype=np.float32)  # every sample tells where it was


class HearingTranslator(ScriptedTranslator):
    """A scripted backend that, like `whisper`, hears captions."""

    needs_audio = True


def caption(text: str, final: bool, start: float = 2.0, end: float = 6.0) -> Caption:
    return Caption("minji", "SG_1", text, final=final, start=start, end=end, language="ko", lag=0.5)


def run(translator, captions, audio_of=lambda c: audio_span(TRACK, c.start, c.end)):
    service = TranslationService(translator)
    stage = TranslationStage(service, TranslationTargets(["en"]), audio_of=audio_of)
    out: list[Caption] = []
    pipeline = Pipeline([stage], [out.append])

    async def scenario():
        for c in captions:
            pipeline.send(c)
            await asyncio.sleep(0.05)
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    return out


def test_a_backend_that_hears_gets_each_finals_audio_and_no_provisional_work():
    said = [caption("When the meeting started", False), caption(CLAUSE, False), caption(CLAUSE + " we agreed.", True)]
    translator = HearingTranslator()
    out = run(translator, said)
    (request,) = translator.requests  # the final only: a clause has no clean edges in the audio
    assert request.text == CLAUSE + " we agreed."
    first, last = round((2.0 - CAPTION_AUDIO_MARGIN) * SAMPLE_RATE), round((6.0 + CAPTION_AUDIO_MARGIN) * SAMPLE_RATE)
    assert np.array_equal(request.audio, TRACK[first:last])
    assert [c.final for c in out if c.translated] == [True]


def test_a_backend_that_reads_is_never_given_audio_and_a_door_without_audio_gives_none():
    audio_asked: list[Caption] = []

    def audio_of(c: Caption):
        audio_asked.append(c)
        return audio_span(TRACK, c.start, c.end)

    reader = ScriptedTranslator()
    run(reader, [caption(CLAUSE, False), caption(CLAUSE + " we agreed.", True)], audio_of)
    assert [r.audio for r in reader.requests] == [None, None] and not audio_asked  # the clause too
    hearer = HearingTranslator()
    run(hearer, [caption("We agreed.", True)], audio_of=None)
    assert [r.audio for r in hearer.requests] == [None]  # the backend says the door gives none


def test_audio_at_the_edges_of_a_file_is_cut_to_what_there_is():
    assert len(audio_span(TRACK, 0.1, 1.0)) == round(1.2 * SAMPLE_RATE)
    assert len(audio_span(TRACK, 19.5, 20.0)) == round(0.7 * SAMPLE_RATE)
    assert audio_span(TRACK, 25.0, 26.0) is None


def test_a_speaker_keeps_recent_audio_only_for_a_stage_that_hears_captions():
    async def scenario():
        kept = {}
        for name, translator in (("hears", HearingTranslator()), ("reads", ScriptedTranslator())):
            stage = TranslationStage(TranslationService(translator), TranslationTargets(["en"]))
            speaker = LiveSpeaker(IdleWorker(), StreamConfig(), name=name, pipeline=Pipeline([stage]))
            speaker.push(TRACK[:SAMPLE_RATE])
            said = caption("Hello.", True, start=0.2, end=0.5)
            kept[name] = speaker.caption_audio(said)
        return kept

    kept = asyncio.run(scenario())
    assert np.array_equal(kept["hears"], TRACK[: round(0.7 * SAMPLE_RATE)])
    assert kept["reads"] is None
