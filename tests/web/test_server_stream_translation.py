"""`/asr?translate_to=`: lines with their translations, from the real local model (the
packaged Qwen2.5 GGUF through llama.cpp), and what a client is told when translation cannot
run. Captions never wait for translations; a bad language is refused before the upgrade
(tests/web/test_server_stream_errors.py)."""

from __future__ import annotations

import json

import pytest

from support.asr import assert_finished, assert_well_formed, chunks, talk, wait_until_idle
from support.speech import wer
from support.translating import looks_spanish, translating_server
from support.translators import ScriptedTranslator


@pytest.fixture(scope="module")
def local_model_server(engine, llama_translator):
    with translating_server(engine, llama_translator) as running:
        yield running


@pytest.fixture(scope="module")
def scripted():
    return ScriptedTranslator()


@pytest.fixture(scope="module")
def scripted_server(engine, scripted):
    with translating_server(engine, scripted) as running:
        yield running


def test_english_speech_streamed_with_translate_to_es_gets_spanish_lines(local_model_server, speech_short):
    conv = talk(
        local_model_server.url, chunks(speech_short.pcm, 3200), query="?translate_to=es", interval=0.03, timeout=180
    )
    assert_well_formed(conv, translated=("es",))
    assert_finished(conv)
    lines = conv.messages[-2]["lines"]
    text = " ".join(line["text"] for line in lines)
    assert wer(speech_short.text, text) <= 0.25, text
    spanish = " ".join(line["translation"] for line in lines)
    print(f"\n  en: {text}\n  es: {spanish}")
    # Every line came in Spanish by the end (the end waits a little for the last ones) ...
    assert all(line["translation"].strip() for line in lines), lines
    assert all(line["translations"] == {"es": line["translation"]} for line in lines)
    assert looks_spanish(spanish, text), spanish
    # ... but no line waited for its translation: each went out untranslated first.
    first_seen = {}
    for update in conv.updates:
        for line in update["lines"]:
            first_seen.setdefault((line["start"], line["text"]), line["translation"])
    assert any(translation == "" for translation in first_seen.values()), first_seen
    assert conv.messages[-2]["buffer_translation"] == ""
    assert wait_until_idle(local_model_server.url)["scheduler"]["streams"] == 0


def test_several_languages_and_diff_mode_carry_every_translation(scripted_server, speech_short):
    conv = talk(
        scripted_server.url, chunks(speech_short.pcm, 3200), query="?translate_to=ko,fr&mode=diff", interval=0.03
    )
    assert_well_formed(conv, mode="diff", translated=("ko", "fr"))
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.errors == []
    lines: list[dict] = []
    for update in conv.updates:  # the client's reconstruction, as WhisperLiveKit documents it
        if update["type"] == "snapshot":
            lines[:] = update["lines"]
        else:
            lines.extend(update.get("new_lines", []))
            assert len(lines) == update["n_lines"]
    assert lines
    for line in lines:
        assert line["translations"] == {"ko": f"[ko] {line['text']}", "fr": f"[fr] {line['text']}"}, line
        assert line["translation"] == line["translations"]["ko"]
    # A translation changes a line already sent: that update is a snapshot, as a revision's is.
    # (Where a translation came before its line was first sent, the line went out translated.)
    first_sent: dict[str, dict] = {}
    for update in conv.updates:
        for line in update.get("lines", []) + update.get("new_lines", []):
            first_sent.setdefault(line["text"], line)
    late = [line for line in first_sent.values() if not line["translation"]]
    snapshots = sum(1 for u in conv.updates if u["type"] == "snapshot")
    assert snapshots >= 1 + min(1, len(late)), (snapshots, late)


def test_a_line_spoken_in_the_target_language_is_its_own_translation(scripted_server, speech_short):
    conv = talk(scripted_server.url, chunks(speech_short.pcm, 3200), query="?translate_to=en,ko", interval=0.03)
    assert_well_formed(conv, translated=("en", "ko"))
    assert_finished(conv)
    for line in conv.messages[-2]["lines"]:
        assert line["translation"] == line["text"] and line["translations"]["ko"] == f"[ko] {line['text']}", line


def test_set_translation_mid_stream_translates_the_lines_after_it(scripted_server, speech_short):
    frames = chunks(speech_short.pcm, 3200)
    frames.insert(2, json.dumps({"type": "set_translation", "languages": ["de"]}))
    conv = talk(scripted_server.url, frames, interval=0.03)
    assert_finished(conv)
    lines = conv.messages[-2]["lines"]
    assert lines and all(line["translation"] == f"[de] {line['text']}" for line in lines), lines


def test_a_long_lines_first_clauses_come_translated_in_the_buffer_before_it_ends(scripted_server, speech_long):
    conv = talk(scripted_server.url, chunks(speech_long.pcm, 3200), query="?translate_to=ko", interval=0.06)
    assert_well_formed(conv, translated=("ko",))
    assert_finished(conv)
    provisional = [u for u in conv.updates if u["buffer_translation"]]
    assert provisional, "no update had a provisional translation"
    for update in provisional:
        # The translation of the open line's first words (as they were when sent ahead); the
        # line itself is not translated until it is final.
        open_line = update["lines"][-1]
        said = update["buffer_translation"].removeprefix("[ko] ")
        assert update["buffer_translation"].startswith("[ko] ") and open_line["text"].startswith(said), update
        assert open_line["translation"] == "", update
    assert conv.messages[-2]["buffer_translation"] == ""
    assert all(line["translation"] == f"[ko] {line['text']}" for line in conv.messages[-2]["lines"])


def test_a_failing_translator_is_reported_once_and_captions_go_on(engine, speech_short):
    broken = ScriptedTranslator()
    broken.fail = True
    with translating_server(engine, broken) as server:
        conv = talk(server.url, chunks(speech_short.pcm, 3200), query="?translate_to=es", interval=0.03)
    assert_well_formed(conv, translated=("es",))
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    assert len(conv.errors) == 1 and "translation is failing" in conv.errors[0], conv.errors
    assert "the backend is down" in conv.errors[0] and "captions go on" in conv.errors[0]
    lines = conv.messages[-2]["lines"]
    assert all(line["translation"] == "" for line in lines)
    assert wer(speech_short.text, " ".join(line["text"] for line in lines)) <= 0.25


def test_without_a_translator_the_client_is_told_why_and_gets_captions(engine, speech_short):
    why = "no translator: pip install 'roomscribe[translate]' for the local model"
    with translating_server(engine, None, unavailable=why) as server:
        conv = talk(server.url, chunks(speech_short.pcm, 3200), query="?translate_to=ko", interval=0.03)
    # Right after the config: one error naming what to install; then captions as usual,
    # their lines without translation fields (WhisperLiveKit: only when translation runs).
    assert conv.messages[1] == {
        "error": f"translation is unavailable on this server: {why} (captions go on without translations)"
    }
    assert conv.errors == [conv.messages[1]["error"]]
    conv.messages.pop(1)
    assert_well_formed(conv)
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    assert wer(speech_short.text, conv.text()) <= 0.25
