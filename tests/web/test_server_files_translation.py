"""Translated file transcripts on `roomscribe serve`: `translate_to` on `POST /transcribe` and the
OpenAI-compatible route, subtitles in a chosen language, translation in `/status`, and the
errors (a bad language, a subtitle language not asked for, a server without a translator).

The translations come from the real packaged model (`roomscribe[translate]`) through the
server's one translation queue, on one short English clip; they are checked for words a
Spanish translation of it must have, never for exact text.
"""

from __future__ import annotations

import io

import aiohttp
import pytest

from roomscribe.web import keys
from support.uploads import form, get_json, post_json, request

NO_TRANSLATOR = "no translator: pip install 'roomscribe[translate]' for the local model"


def spanish(text: str) -> bool:
    """The clip ("To say a few words on the principles of design in typography") in Spanish:
    its key words translated, no English sentence left over."""
    lowered = text.lower()
    return (
        "principios" in lowered
        and ("tipograf" in lowered or "diseñ" in lowered)
        and not any(word in lowered.split() for word in ("the", "principles", "words", "say"))
    )


# -- the real model -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def translated(translate_extra, server, clip) -> dict:
    """The clip through `POST /transcribe?translate_to=es` (the model loads on this first use)."""
    path, _reference, _duration = clip
    status, doc = post_json(server.url + "/transcribe?translate_to=es", data=form(path.read_bytes(), path.name))
    assert status == 200, doc
    return doc


def test_each_json_segment_gets_its_spanish_translation(translated):
    assert translated["language"] == "en" and translated["segments"]
    for segment in translated["segments"]:
        assert set(segment["translations"]) == {"es"}, segment
        assert segment["translations"]["es"].strip() and segment["translations"]["es"] != segment["text"]
    whole = " ".join(s["translations"]["es"] for s in translated["segments"])
    assert spanish(whole), whole
    assert translated["translations"]["es"] == whole
    print("es:", whole)


def test_subtitles_come_in_the_chosen_translation_and_status_counts_it(translated, server, clip):
    path, _reference, _duration = clip
    fields = {"translate_to": "Spanish", "subtitle_language": "es", "format": "srt"}
    status, kind, body = request("POST", server.url + "/transcribe", data=form(path.read_bytes(), path.name, **fields))
    assert status == 200 and kind == "application/x-subrip", body[:300]
    srt = body.decode()
    assert srt.startswith("1\n00:00:0") and " --> " in srt
    text = " ".join(line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit())
    assert spanish(text), srt
    _, doc = get_json(server.url + "/status")
    assert doc["translation"]["backend"] == "llama" and doc["translation"]["state"] == "ok"
    assert doc["translation"]["translated"] >= 2 and doc["translation"]["queued"] == 0


def test_the_openai_client_gets_translations_in_verbose_json(translated, server, clip):
    from openai import OpenAI

    path, _reference, _duration = clip
    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=(path.name, io.BytesIO(path.read_bytes())),
        response_format="verbose_json",
        language="en",
        extra_body={"translate_to": "es"},
    )
    doc = result.model_dump()
    assert doc["segments"] and all(set(s["translations"]) == {"es"} for s in doc["segments"])
    assert spanish(doc["translations"]["es"]), doc["translations"]


# -- errors (no model needed) -----------------------------------------------------------------------


def _fields(path, *pairs: tuple[str, str]) -> aiohttp.FormData:
    body = aiohttp.FormData()
    body.add_field("file", path.read_bytes(), filename=path.name, content_type="application/octet-stream")
    for name, value in pairs:
        body.add_field(name, value)
    return body


@pytest.mark.parametrize(
    ("route", "query", "pairs", "message"),
    [
        ("/transcribe", "?translate_to=klingon", (), "translate_to: unknown language 'klingon'"),
        # Repeated, in the query or the form (as lists are sent), every value is read.
        ("/transcribe", "?translate_to=es&translate_to=klingon", (), "unknown language 'klingon'"),
        ("/transcribe", "", (("translate_to", "es"), ("translate_to", "klingon")), "unknown language 'klingon'"),
        ("/transcribe", "", (("translate_to[]", "auto"),), "must be a language, not 'auto'"),
        ("/transcribe", "?translate_to=en,ko,fr,es,de,it,ja", (), "at most 6"),
        ("/v1/audio/transcriptions", "", (("translate_to", "xx"),), "unknown language 'xx'"),
        (
            "/transcribe",
            "?translate_to=es&format=srt&subtitle_language=fr",
            (),
            "subtitle_language fr is not among translate_to (es)",
        ),
        ("/transcribe", "?format=vtt&subtitle_language=Korean", (), "subtitle_language ko is not among translate_to"),
        ("/transcribe", "?translate_to=es&subtitle_language=es", (), "subtitle_language is for format txt, srt or vtt"),
        ("/transcribe", "?translate_to=es&format=srt&progress=true", (), "ask for format json, not srt"),
        ("/transcribe", "?format=docx", (), "format is one of json, txt, text, srt, vtt"),
        (
            "/v1/audio/transcriptions",
            "",
            (("translate_to", "es"), ("response_format", "srt")),
            "translate_to needs response_format json or verbose_json",
        ),
    ],
)
def test_bad_translation_options_are_a_400_that_names_them(server, clip, route, query, pairs, message):
    status, doc = post_json(server.url + route + query, data=_fields(clip[0], *pairs))
    assert status == 400, doc
    assert message in doc["error"]["message"], doc["error"]["message"]


@pytest.fixture
def no_translator(monkeypatch):
    """The server as it is where the translate extra is missing."""
    monkeypatch.setattr(keys, "translation", lambda app: keys.Translation(None, NO_TRANSLATOR))


@pytest.mark.usefixtures("no_translator")
@pytest.mark.parametrize(
    ("route", "fields"),
    [
        ("/transcribe", {"translate_to": "es"}),
        ("/transcribe", {"translate_to": "ko", "format": "vtt", "subtitle_language": "ko"}),
        ("/v1/audio/transcriptions", {"translate_to": "es", "response_format": "verbose_json"}),
    ],
)
def test_translation_without_a_translator_is_a_501_that_says_what_to_install(server, clip, route, fields):
    status, doc = post_json(server.url + route, data=form(clip[0].read_bytes(), clip[0].name, **fields))
    assert status == 501, doc
    assert doc["error"]["message"] == NO_TRANSLATOR and doc["error"]["type"] == "server_error"


@pytest.mark.usefixtures("no_translator")
def test_without_a_translator_status_says_why_and_a_bad_language_is_still_the_clients_mistake(server, clip):
    _, doc = get_json(server.url + "/status")
    assert doc["translation"] == {"state": "unavailable", "reason": NO_TRANSLATOR}
    status, doc = post_json(server.url + "/transcribe?translate_to=klingon", data=form(clip[0].read_bytes()))
    assert status == 400 and "klingon" in doc["error"]["message"]
