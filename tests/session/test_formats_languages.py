"""Transcripts in a chosen language: text, srt and vtt show one translation (or the spoken text),
json keeps them all, and a file's translated segments go into its JSON document."""

from __future__ import annotations

import json

import pytest

from roomscribe.engine import OfflineSegment, OfflineTranscript
from roomscribe.session import Caption
from roomscribe.session.formats import render, segment_captions, transcript_document, translated_text


def captions() -> list[Caption]:
    return [
        Caption(
            "",
            "0",
            "Good morning.",
            final=True,
            start=0.0,
            end=1.5,
            language="en",
            translations={"es": "Buenos días.", "ko": "좋은 아침입니다."},
        ),
        # Spoken in Spanish: not translated into Spanish, and its Korean translation failed.
        Caption("", "1", "Hasta luego.", final=True, start=2.0, end=3.25, language="es"),
        Caption("", "2", "Thank you.", final=True, start=4.0, end=5.0, language="en", translations={"es": "Gracias."}),
    ]


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("text", "Buenos días.\nHasta luego.\nGracias.\n"),
        (
            "srt",
            "1\n00:00:00,000 --> 00:00:01,500\nBuenos días.\n\n"
            "2\n00:00:02,000 --> 00:00:03,250\nHasta luego.\n\n"
            "3\n00:00:04,000 --> 00:00:05,000\nGracias.\n",
        ),
        (
            "vtt",
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nBuenos días.\n\n"
            "00:00:02.000 --> 00:00:03.250\nHasta luego.\n\n"
            "00:00:04.000 --> 00:00:05.000\nGracias.\n",
        ),
    ],
)
def test_subtitles_in_a_chosen_language_show_its_translations_and_the_spoken_text_where_there_is_none(fmt, expected):
    assert render(captions(), fmt, language="es") == expected


def test_without_a_language_subtitles_show_the_spoken_text_as_before():
    assert render(captions(), "text") == "Good morning.\nHasta luego.\nThank you.\n"
    assert render(captions(), "text", language=None) == render(captions(), "text")


def test_a_language_nothing_was_translated_into_shows_the_spoken_text():
    assert render(captions(), "srt", language="fr") == render(captions(), "srt")


def test_a_chosen_language_keeps_the_speaker_labels():
    labelled = [Caption("", "0", "Hi.", final=True, end=1.0, speaker="S2", translations={"ko": "안녕."})]
    assert render(labelled, "text", language="ko") == "S2: 안녕.\n"
    named = [Caption("minji", "0", "Hi.", final=True, end=1.0, translations={"ko": "안녕."})]
    assert render(named, "vtt", speakers=True, language="ko").endswith("minji: 안녕.\n")


def test_json_keeps_every_translation_whatever_the_language():
    doc = json.loads(render(captions(), "json", language="es"))
    assert doc["segments"][0]["translations"] == {"es": "Buenos días.", "ko": "좋은 아침입니다."}
    assert "translations" not in doc["segments"][1]


def test_the_whole_text_in_a_language_joins_translations_and_untranslated_segments():
    assert translated_text(captions(), "es") == "Buenos días. Hasta luego. Gracias."
    assert translated_text(captions(), "ko") == "좋은 아침입니다. Hasta luego. Thank you."


def _transcript() -> OfflineTranscript:
    return OfflineTranscript(
        language="en",
        language_probability=0.98,
        duration=5.0,
        processing_time=1.0,
        segments=[
            OfflineSegment(0.0, 1.5, " Good morning.", [{"word": "Good", "start": 0.0, "end": 0.5}]),
            OfflineSegment(4.0, 5.0, " Thank you.", [{"word": "Thank", "start": 4.0, "end": 4.4}]),
        ],
    )


def test_a_file_document_gets_translations_per_segment_and_for_the_whole_text():
    result = _transcript()
    segments = segment_captions(result.segments, language=result.language)
    assert [c.language for c in segments] == ["en", "en"] and segments[0].text == "Good morning."
    segments[0].translations.update(es="Buenos días.", fr="Bonjour.")
    segments[1].translations.update(es="Gracias.")
    doc = transcript_document(result, segments, ("es", "fr"))
    assert [s["translations"] for s in doc["segments"]] == [
        {"es": "Buenos días.", "fr": "Bonjour."},
        {"es": "Gracias."},
    ]
    assert doc["translations"] == {"es": "Buenos días. Gracias.", "fr": "Bonjour. Thank you."}
    # Without languages the document is as it always was.
    plain = transcript_document(result)
    assert "translations" not in plain and all("translations" not in s for s in plain["segments"])


def test_json_segments_read_back_keep_their_translations():
    """A server's JSON answer (`roomscribe transcribe --server`) renders in any of its languages."""
    doc = {"segments": [{"start": 0.0, "end": 1.5, "text": " Good morning.", "translations": {"es": "Buenos días."}}]}
    back = segment_captions(doc["segments"])
    assert back[0].translations == {"es": "Buenos días."}
    assert render(back, "text", language="es") == "Buenos días.\n"
