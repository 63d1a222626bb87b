"""Engine events become captions on the speaker's clock; the transcript sink keeps them and
renders every format."""

from __future__ import annotations

import json

import pytest

from roomscribe.engine import Event, EventType
from roomscribe.engine.events import Word
from roomscribe.session import CaptionBuilder, Transcript


def _final(seg: str, words: list[tuple[str, float, float]], text: str, closed: bool = False) -> Event:
    return Event(
        EventType.FINAL,
        seg,
        emitted_at=words[-1][2] + 1,
        text="".join(w for w, _, _ in words),
        words=[Word(w, s, e) for w, s, e in words],
        start=words[0][1],
        end=words[-1][2],
        language="en",
        segment_final=closed,
        segment_text=text,
    )


def _interim(seg: str, words: list[tuple[str, float, float]], emitted_at: float = 1.0) -> Event:
    return Event(
        EventType.INTERIM,
        seg,
        emitted_at,
        text="".join(w for w, _, _ in words).strip(),
        words=[Word(w, s, e) for w, s, e in words],
        start=words[0][1],
        end=words[-1][2],
        language="en",
    )


def test_an_interim_tail_is_shown_after_the_committed_words_and_the_final_closes_the_segment():
    build = CaptionBuilder("ann", offset=10.0, track="TR_1")
    first = build.caption(_interim("SG_1", [(" hello", 0.2, 0.5), (" wor", 0.6, 1.0)]))
    assert (first.text, first.tail, first.shown, first.final) == ("", "hello wor", "hello wor", False)
    assert first.start == pytest.approx(10.2) and first.track == "TR_1" and not first.commits
    committed = build.caption(_final("SG_1", [(" hello", 0.2, 0.5)], "hello"))
    assert (committed.text, committed.tail, committed.final) == ("hello", "", False) and committed.commits
    tail = build.caption(_interim("SG_1", [(" world", 0.6, 1.1)], emitted_at=1.5))
    assert (tail.text, tail.tail, tail.shown) == ("hello", "world", "hello world")
    assert tail.lag == pytest.approx(0.4) and tail.emitted_at == pytest.approx(11.5)
    last = build.caption(_final("SG_1", [(" world.", 0.6, 1.1)], "hello world.", closed=True))
    assert (last.text, last.final, last.shown) == ("hello world.", True, "hello world.")
    assert [w.text for w in last.words] == [" hello", " world."] and [w.text for w in last.new_words] == [" world."]
    assert last.start == pytest.approx(10.2) and last.end == pytest.approx(11.1)


def test_punctuation_committed_apart_from_its_word_joins_that_word():
    build = CaptionBuilder("ann", offset=2.0)
    build.caption(_final("SG_1", [(" which", 0.0, 0.3), (" concerned", 0.3, 0.8)], "which concerned"))
    caption = build.caption(
        _final("SG_1", [(",", 0.8, 0.9), (" it", 1.0, 1.1), (".", 1.1, 1.2)], "which concerned, it.", closed=True)
    )
    assert [w.text for w in caption.words] == [" which", " concerned,", " it."]
    assert (caption.words[1].start, caption.words[1].end) == (2.3, 2.9)
    assert caption.text == "which concerned, it."


def test_speech_start_and_end_are_not_captions():
    build = CaptionBuilder("ann")
    assert build.caption(Event(EventType.SPEECH_START, "SG_1", 0.0)) is None
    assert build.caption(Event(EventType.SPEECH_END, "SG_1", 1.0)) is None


def test_korean_words_are_joined_without_stray_spaces():
    build = CaptionBuilder("minji")
    event = _final("SG_k", [(" 안녕하세요", 0.0, 0.8), (" 여러분.", 0.8, 1.4)], "안녕하세요 여러분.", closed=True)
    event.language = "ko"
    caption = build.caption(event)
    assert caption.text == "안녕하세요 여러분." and caption.language == "ko"


def test_the_transcript_replaces_a_segments_updates_and_keeps_the_latest():
    build, transcript = CaptionBuilder("ann", offset=10.0), Transcript()
    transcript(build.caption(_interim("SG_1", [(" hello", 0.2, 0.5)])))
    assert transcript.committed() == []  # nothing committed yet
    transcript(build.caption(_final("SG_1", [(" hello", 0.2, 0.5)], "hello")))
    transcript(build.caption(_final("SG_1", [(" world.", 0.6, 1.1)], "hello world.", closed=True)))
    (line,) = transcript.committed()
    assert (line.text, line.tail, line.final) == ("hello world.", "", True)
    assert [w["word"] for w in line.as_dict()["words"]] == ["hello", "world."]


def test_a_revised_final_replaces_its_closed_segment_and_leaves_the_open_one_alone():
    build, transcript = CaptionBuilder("ann", offset=10.0), Transcript()
    transcript(build.caption(_final("SG_1", [(" The", 0.0, 0.3), (" narrowing.", 0.3, 1.0)], "The narrowing.", True)))
    transcript(build.caption(_final("SG_2", [(" Printing", 1.5, 2.0)], "Printing")))
    revision = _final("SG_1", [(" This", 0.0, 0.1), (" is", 0.1, 0.2), (" narrowing.", 0.3, 1.0)], "", closed=True)
    revision.revision = True
    revised = build.caption(revision)
    transcript(revised)
    assert (revised.segment_id, revised.text, revised.final, revised.revised) == (
        "SG_1",
        "This is narrowing.",
        True,
        True,
    )
    assert revised.start == pytest.approx(10.0) and revised.end == pytest.approx(11.0)
    # The open segment goes on with the words it had.
    more = build.caption(_final("SG_2", [(" then.", 2.0, 2.4)], "Printing then.", closed=True))
    transcript(more)
    assert more.text == "Printing then." and not more.revised
    assert [c.text for c in transcript.committed()] == ["This is narrowing.", "Printing then."]


def test_session_transcript_orders_speakers_by_start_and_renders_every_format():
    transcript = Transcript()
    for who, offset, seg, word in [
        ("bo", 5.0, "SG_b", " second"),
        ("ann", 1.0, "SG_a", " first"),
        ("ko", 7.0, "SG_k", "안녕하세요"),
    ]:
        transcript(
            CaptionBuilder(who, offset=offset).caption(
                _final(seg, [(word, 0.0, 0.5 if who != "ko" else 0.8)], word.strip(), closed=True)
            )
        )
    assert transcript.render("txt") == "ann: first\nbo: second\nko: 안녕하세요\n"
    assert "00:00:05,000 --> 00:00:05,500\nbo: second" in transcript.render("srt")
    assert transcript.render("vtt").startswith("WEBVTT\n\n00:00:01.000 --> 00:00:01.500\nann: first")
    doc = json.loads(transcript.render("json"))
    assert [s["speaker"] for s in doc["segments"]] == ["ann", "bo", "ko"]
    assert doc["segments"][2]["text"] == "안녕하세요"


def test_transcript_memory_is_bounded():
    transcript, build = Transcript(max_segments=3), CaptionBuilder("ann")
    for i in range(10):
        transcript(build.caption(_final(f"SG_{i}", [(" w", i, i + 0.5)], "w", closed=True)))
    assert list(transcript.segments) == ["SG_7", "SG_8", "SG_9"]
