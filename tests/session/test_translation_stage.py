"""The translation stage: captions pass at once, translations follow for the same segment."""

from __future__ import annotations

import asyncio

import pytest

from roomscribe.session import Caption, Pipeline
from roomscribe.session.control import ControlError
from roomscribe.session.translation import TranslationStage, TranslationTargets
from roomscribe.translation import TranslationService
from support.translators import ScriptedTranslator


def caption(text: str, segment: str = "SG_1", final: bool = True, language: str = "en") -> Caption:
    return Caption("alice", segment, text, final=final, language=language, track="TR_a", lag=0.5)


def run_stage(targets, captions, translator=None, between=None):
    translator = translator or ScriptedTranslator()
    service = TranslationService(translator)
    out: list[Caption] = []
    stage = TranslationStage(service, TranslationTargets(targets), glossary=lambda: ("Minji",))
    pipeline = Pipeline([stage], [out.append])

    async def scenario():
        for i, c in enumerate(captions):
            pipeline.send(c)
            if between is not None:
                await between(i, out)
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    return out, translator


def test_a_final_passes_at_once_and_its_translations_follow_under_the_same_segment():
    async def between(i, out):
        assert [c.translated for c in out] == [()]  # the caption itself, before any translation

    out, translator = run_stage(["ko", "fr"], [caption("Hello there.")], between=between)
    first, *later = out
    assert first.text == "Hello there." and not first.translations
    assert sorted(c.translated for c in later) == [("fr",), ("ko",)]
    assert all(c.segment_id == "SG_1" and c.final and c.text == "Hello there." for c in later)
    # Each update carries every translation the segment has so far (a transcript keeps the last).
    assert later[-1].translations == {"ko": "[ko] Hello there.", "fr": "[fr] Hello there."}
    assert all(c.lag >= first.lag for c in later)
    assert translator.requests[0].glossary == ("Minji",)


def test_a_segment_is_not_translated_into_its_own_language_nor_a_short_interim():
    out, translator = run_stage(
        ["en", "ko"],
        [caption("안녕하세요", language="ko"), caption("half a sente", segment="SG_2", final=False)],
    )
    assert [r.target for r in translator.requests] == ["en"]
    assert [c.translated for c in out] == [(), (), ("en",)]


def test_a_revised_final_is_translated_again_and_a_late_translation_of_the_old_text_is_dropped():
    translator = ScriptedTranslator(delay=0.05)

    out, translator = run_stage(
        ["ko"], [caption("I sea the problem."), caption("I see the problem.")], translator=translator
    )
    translations = [c.translations["ko"] for c in out if c.translated]
    assert translations == ["[ko] I see the problem."]


def test_a_late_translation_of_a_retracted_segment_is_dropped():
    translator = ScriptedTranslator(delay=0.05)
    retracted = Caption("alice", "SG_1", "", final=True, language="en", revised=True)
    out, translator = run_stage(["ko"], [caption("Pips."), retracted], translator=translator)
    assert [(c.text, c.translated) for c in out] == [("Pips.", ()), ("", ())]  # the retraction passes on


def test_translations_shown_of_a_retracted_segment_are_retracted_with_it():
    async def between(i, out):
        await asyncio.sleep(0.05)  # "Pips." is translated before the retraction comes

    retracted = Caption("alice", "SG_1", "", final=True, language="en", revised=True)
    out, _ = run_stage(["ko", "fr"], [caption("Pips."), retracted], between=between)
    assert [c.translated for c in out[:3]] in ([(), ("ko",), ("fr",)], [(), ("fr",), ("ko",)])
    *_, gone, gone_translations = out
    assert (gone.text, gone.translated) == ("", ())
    assert gone_translations.text == "" and gone_translations.final and gone_translations.segment_id == "SG_1"
    assert sorted(gone_translations.translated) == ["fr", "ko"]
    assert gone_translations.translations == {"ko": "", "fr": ""}


def test_the_speakers_previous_sentences_and_their_translations_go_with_the_next_request():
    async def between(i, out):
        await asyncio.sleep(0.05)  # each translated before the next is said

    out, translator = run_stage(
        ["ko"],
        [caption("First.", "SG_1"), caption("Second.", "SG_2"), caption("Third.", "SG_3")],
        between=between,
    )
    assert translator.requests[0].context == ()
    assert translator.requests[2].context == (("First.", "[ko] First."), ("Second.", "[ko] Second."))


def test_translation_targets_are_parsed_and_bounded():
    targets = TranslationTargets(["Korean", "en", "ko"])
    assert targets.languages == ("ko", "en")
    targets.set("fr, es")
    assert targets.languages == ("fr", "es")
    for bad, match in (
        (["klingon"], "unknown language"),
        (["auto"], "must be a language"),
        (["en", "ko", "fr", "es", "de", "it", "ja"], "at most 6"),
    ):
        with pytest.raises(ControlError, match=match):
            TranslationTargets(bad)


def test_a_files_segments_are_translated_in_place_in_order_each_with_the_ones_before():
    from roomscribe.session.translation import translate_captions

    translator = ScriptedTranslator()
    service = TranslationService(translator)
    segments = [caption("One.", "SG_1"), caption("Two.", "SG_2"), caption("하나.", "SG_3", language="ko")]
    asyncio.run(translate_captions(service, segments, TranslationTargets(["ko", "fr"])))
    service.close()
    assert segments[0].translations == {"ko": "[ko] One.", "fr": "[fr] One."}
    assert segments[2].translations == {"fr": "[fr] 하나."}
    assert [r.context for r in translator.requests if r.target == "ko"][1] == (("One.", "[ko] One."),)


def test_a_long_sentences_stable_clauses_are_translated_provisionally_until_its_final():
    clause = "When the meeting started this morning in the large room,"
    longer = clause + " everyone had already read the report"
    out, translator = run_stage(
        ["ko"],
        [
            caption("When the meeting started", final=False),
            caption(clause, final=False),
            caption(longer, final=False),  # not a new clause yet: no second request
            caption(longer + " and agreed.", final=True),
        ],
        translator=ScriptedTranslator(delay=0.01),
        between=lambda i, out: asyncio.sleep(0.05),
    )
    assert [(r.text, r.target) for r in translator.requests] == [(clause, "ko"), (longer + " and agreed.", "ko")]
    provisional = [c for c in out if c.translated and not c.final]
    final = [c for c in out if c.translated and c.final]
    assert [c.translations["ko"] for c in provisional] == [f"[ko] {clause}"]
    assert [c.translations["ko"] for c in final] == [f"[ko] {longer} and agreed."]
    assert out.index(provisional[0]) < out.index(final[0])
