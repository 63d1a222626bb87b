"""The page's sessions translate into the languages their viewers read: the union of every
page's choice, changed by `set_translation` on the data channel, with the session's state
told to every page. The browser end of it is in tests/web/test_page_browser.py; here the
session and the door's control messages are driven directly, with a scripted translator."""

from __future__ import annotations

import asyncio
import json

import pytest

from roomscribe.engine import StreamConfig
from roomscribe.session import Caption
from roomscribe.session.scheduler import worker_for
from roomscribe.translation import TranslationService
from roomscribe.web.sessions import Session
from roomscribe.web.webrtc import _control
from support.translators import ScriptedTranslator


def _viewer(session: Session, name: str) -> tuple:
    participant = session.join(name)
    inbox: list[dict] = []
    participant.send = inbox.append
    return participant, inbox


def _say(participant, control: dict) -> None:
    _control(participant, json.dumps(control))


def _states(inbox: list[dict]) -> list[tuple[str, list[str]]]:
    return [(m["state"], m["languages"]) for m in inbox if m["type"] == "translation"]


def test_a_session_translates_into_every_language_its_pages_read_and_no_more():
    async def scenario():
        service = TranslationService(ScriptedTranslator())
        session = Session("s", service)
        ana, ana_inbox = _viewer(session, "Ana")
        minji, _ = _viewer(session, "Minji")
        bob, _ = _viewer(session, "Bob")
        _say(ana, {"type": "set_translation", "languages": ["es"]})
        _say(minji, {"type": "set_translation", "languages": ["Korean"]})
        _say(bob, {"type": "set_translation", "languages": ["es"]})
        both = session.translation_targets.languages
        # Ana's choice changed the session: every page heard of it, Ana has the answer too.
        assert ana_inbox[:2] == [
            {"type": "translation", "state": "on", "languages": ["es"]},
            {"type": "reading", "language": "es"},
        ]
        await minji.leave()
        after_leaving = session.translation_targets.languages
        _say(ana, {"type": "set_translation", "languages": []})
        _say(bob, {"type": "set_translation", "languages": []})
        service.close()
        return both, after_leaving, session.translation_targets.languages, _states(ana_inbox)

    both, after_leaving, none, states = asyncio.run(scenario())
    assert both == ("es", "ko")
    assert after_leaving == ("es",)
    assert none == ()
    # Every page hears each change once (and its own choice's state in reply).
    assert ("on", ["es", "ko"]) in states and states[-1] == ("off", [])


def test_a_bad_choice_is_refused_and_changes_nothing():
    async def scenario():
        session = Session("s", TranslationService(ScriptedTranslator()))
        viewers = [_viewer(session, f"V{i}") for i in range(7)]
        for (viewer, _), language in zip(viewers, ["en", "ko", "es", "fr", "de", "ja", "zh"]):
            _say(viewer, {"type": "set_translation", "languages": [language]})
        last, inbox = viewers[-1]
        _say(last, {"type": "set_translation", "languages": ["xx"]})
        _say(last, {"type": "set_translation", "languages": ["en", "ko"]})
        return session.translation_targets.languages, last.reads, [m for m in inbox if m["type"] == "error"]

    languages, reads, errors = asyncio.run(scenario())
    assert languages == ("en", "ko", "es", "fr", "de", "ja") and reads is None
    assert [e["message"] for e in errors] == [
        "bad control message: languages: at most 6 translation languages, not 7",
        "bad control message: translation language: unknown language 'xx': not a language Whisper knows "
        "(use a code such as en or ko, a name such as English, or auto)",
        "bad control message: a page reads one language: set_translation takes one (or [] for none)",
    ]


def test_without_a_translator_a_page_that_reads_a_language_is_told_why():
    async def scenario():
        session = Session("s", None, "no translator: pip install 'roomscribe[translate]'")
        ana, inbox = _viewer(session, "Ana")
        _say(ana, {"type": "set_translation", "languages": ["ko"]})
        return inbox

    inbox = asyncio.run(scenario())
    assert inbox[1] == {"type": "reading", "language": "ko"}
    assert _states(inbox) == [("unavailable: no translator: pip install 'roomscribe[translate]'", ["ko"])]


@pytest.mark.parametrize("fails", [False, True], ids=["translated", "failing"])
def test_finals_reach_every_page_first_as_spoken_then_with_their_translations(engine, fails):
    async def scenario():
        translator = ScriptedTranslator()
        translator.fail = fails
        service = TranslationService(translator)
        session = Session("s", service)
        speaker, _ = _viewer(session, "Minji")
        reader, inbox = _viewer(session, "Ana")
        _say(reader, {"type": "set_translation", "languages": ["en"]})
        speaker.start_speaking(worker_for(engine), StreamConfig())
        speaker.speaker.pipeline.send(
            Caption("Minji", "seg-1", "안녕하세요 여러분", final=True, language="ko", end=1.0)
        )
        await service.drain(5)
        await asyncio.sleep(0.05)
        service.close()
        return inbox, session.transcript.committed()

    inbox, transcript = asyncio.run(scenario())
    captions = [m for m in inbox if m["type"] == "caption"]
    assert captions[0]["text"] == "안녕하세요 여러분" and "translations" not in captions[0]
    if fails:
        assert len(captions) == 1
        assert _states(inbox)[-1] == ("failing: scripted: the backend is down", ["en"])
    else:
        assert captions[1]["translations"] == {"en": "[en] 안녕하세요 여러분"} and captions[1]["translated"] == ["en"]
        assert captions[1]["text"] == "안녕하세요 여러분"  # its own text unchanged
        assert transcript[0].translations == {"en": "[en] 안녕하세요 여러분"}  # downloads have it too


def test_a_long_open_line_gets_its_first_clauses_translated_and_the_transcript_keeps_the_line(engine):
    words = "we will go through the numbers from last quarter and then talk about the launch next week,"

    async def scenario():
        service = TranslationService(ScriptedTranslator())
        session = Session("s", service)
        speaker, _ = _viewer(session, "Minji")
        reader, inbox = _viewer(session, "Ana")
        _say(reader, {"type": "set_translation", "languages": ["ko"]})
        speaker.start_speaking(worker_for(engine), StreamConfig())
        speaker.speaker.pipeline.send(Caption("Minji", "seg-1", words, tail="and", language="en", end=3.0))
        await service.drain(5)
        await asyncio.sleep(0.05)
        service.close()
        return inbox, session.transcript.segments["seg-1"]

    inbox, kept = asyncio.run(scenario())
    captions = [m for m in inbox if m["type"] == "caption"]
    assert [(c["final"], c.get("translated")) for c in captions] == [(False, None), (False, ["ko"])]
    assert captions[1]["text"] == words and captions[1]["translations"] == {"ko": f"[ko] {words}"}
    # The provisional translation went to the pages; the transcript keeps the line as it is now.
    assert kept.tail == "and" and kept.translations == {}
