"""The pieces every live door shares: the session transcript, language codes, upload sniffing."""

from __future__ import annotations

import json

import pytest

from roomscribe.audio import UnsupportedFormatError, load_audio, sniff_format
from roomscribe.engine import Event, EventType
from roomscribe.engine.events import Word
from roomscribe.live import Transcript, whisper_language


def _final(seg: str, words: list[tuple[str, float, float]], text: str, closed: bool = False) -> Event:
    return Event(EventType.FINAL, seg, emitted_at=words[-1][2] + 1, text="".join(w for w, _, _ in words),
                 words=[Word(w, s, e) for w, s, e in words], start=words[0][1], end=words[-1][2],
                 language="en", segment_final=closed, segment_text=text)


def test_interim_tail_is_replaced_and_final_text_accumulates_on_the_session_clock():
    t = Transcript()
    t.apply("ann", Event(EventType.INTERIM, "SG_1", 1.0, text=" hello wor", start=0.2, end=1.0,
                         segment_text=" hello wor"), offset=10.0)
    line = t.lines["SG_1"]
    assert line.tail == " hello wor" and line.text == "" and t.committed() == []
    t.apply("ann", _final("SG_1", [(" hello", 0.2, 0.5)], "hello"), offset=10.0)
    t.apply("ann", _final("SG_1", [(" world.", 0.6, 1.1)], "hello world.", closed=True), offset=10.0)
    (line,) = t.committed()
    assert (line.text, line.tail, line.closed) == ("hello world.", "", True)
    assert line.start == pytest.approx(10.2) and line.end == pytest.approx(11.1)
    assert [w["word"] for w in line.words] == ["hello", "world."]


def test_session_transcript_orders_speakers_by_start_and_renders_every_format():
    t = Transcript()
    t.apply("bo", _final("SG_b", [(" second", 0.0, 0.5)], "second", closed=True), offset=5.0)
    t.apply("ann", _final("SG_a", [(" first", 0.0, 0.5)], "first", closed=True), offset=1.0)
    t.apply("ko", _final("SG_k", [("안녕하세요", 0.0, 0.8)], "안녕하세요", closed=True), offset=7.0)
    assert t.render("txt") == "ann: first\nbo: second\nko: 안녕하세요\n"
    assert "00:00:05,000 --> 00:00:05,500\nbo: second" in t.render("srt")
    assert t.render("vtt").startswith("WEBVTT\n\n00:00:01.000 --> 00:00:01.500\nann: first")
    doc = json.loads(t.render("json"))
    assert [s["speaker"] for s in doc["segments"]] == ["ann", "bo", "ko"]
    assert doc["segments"][2]["text"] == "안녕하세요"


def test_transcript_memory_is_bounded():
    t = Transcript(max_lines=3)
    for i in range(10):
        t.apply("ann", _final(f"SG_{i}", [(" w", i, i + 0.5)], "w", closed=True), offset=0.0)
    assert list(t.lines) == ["SG_7", "SG_8", "SG_9"]


@pytest.mark.parametrize("given, code", [(None, None), ("auto", None), ("", None), ("EN", "en"),
                                         ("ko-KR", "ko"), ("en_US", "en")])
def test_client_language_choices_become_whisper_codes(given, code):
    assert whisper_language(given) == code


def test_unknown_language_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="unknown language 'xx'"):
        whisper_language("xx")


@pytest.mark.parametrize("head, kind", [
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "wav"), (b"fLaC\x00\x00", "flac"), (b"OggS\x00\x02", "ogg"),
    (b"\x1a\x45\xdf\xa3\x9f\x42", "webm"), (b"\x00\x00\x00\x20ftypM4A ", "mp4"), (b"ID3\x04\x00", "mp3"),
    (b"\xff\xfb\x90\x64", "mp3"), (b"#EXTM3U\n#EXT-X", None), (b"\x89PNG\r\n\x1a\n", None), (b"hello", None),
])
def test_uploads_are_recognised_by_their_first_bytes(head, kind):
    assert sniff_format(head) == kind


def test_raw_pcm_starting_like_an_mp3_frame_is_not_taken_for_one_in_a_stream():
    assert sniff_format(b"\xff\xff\x00\x00", frame_sync=False) is None


def test_a_playlist_upload_is_refused_before_ffmpeg_opens_it(tmp_path):
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"not for clients")
    playlist = f"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile://{secret}\n#EXT-X-ENDLIST\n".encode()
    with pytest.raises(UnsupportedFormatError, match="not a supported audio format"):
        load_audio(playlist, untrusted=True)
