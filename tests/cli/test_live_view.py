"""The terminal view: captions drawn as a reader sees them."""

from __future__ import annotations

import io

from roomscribe.cli.live_view import LiveView
from roomscribe.engine import Word
from roomscribe.session import Caption


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_tail_that_opens_with_punctuation_follows_the_committed_words_without_a_space():
    out = Terminal()
    view = LiveView(out, "text")
    words = [Word(" 너무", 0.0, 0.3), Word(" 잘", 0.3, 0.5), Word(" 맞으세요", 0.5, 1.0)]
    view(
        Caption(
            "ko-speaker", "SG_1", "너무 잘 맞으세요", ".", words=words, tail_words=[Word(".", 1.0, 1.1)], language="ko"
        )
    )
    view(
        Caption(
            "en-speaker",
            "SG_2",
            "Hello",
            "there",
            words=[Word(" Hello", 0, 0.4)],
            tail_words=[Word(" there", 0.4, 0.8)],
        )
    )
    drawn = out.getvalue().replace("\033[2m", "").replace("\033[0m", "").replace("\r\033[K", "\n")
    assert "너무 잘 맞으세요." in drawn and "맞으세요 ." not in drawn
    assert "Hello there" in drawn


def test_a_translation_is_shown_under_its_caption_and_as_its_own_json_line():
    import dataclasses
    import json

    caption = Caption("alice", "SG_1", "Good morning.", final=True, language="en")
    translated = dataclasses.replace(caption, translations={"ko": "좋은 아침입니다."}, translated=("ko",))
    text = io.StringIO()
    view = LiveView(text, "text")
    view(caption)
    view(translated)
    assert text.getvalue() == "Good morning.\n  [ko] 좋은 아침입니다.\n"
    lines = io.StringIO()
    view = LiveView(lines, "json")
    view(caption)
    view(translated)
    *_, last = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert last == {
        "type": "translation",
        "segment_id": "SG_1",
        "language": "ko",
        "translation_of": "en",
        "text": "좋은 아침입니다.",
        "final": True,
    }
