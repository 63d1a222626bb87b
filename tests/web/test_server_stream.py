"""`/asr`: the WhisperLiveKit-compatible WebSocket of `roomscribe serve`, driven by a real
client (aiohttp) over real speech: PCM at 1x real time, compressed browser audio, the diff
protocol, per-stream options, and clients that misbehave.

WER: whisper_normalizer's EnglishTextNormalizer on both sides, then jiwer.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from support.asr import (
    LJ,
    assert_finished,
    assert_well_formed,
    chunks,
    decode_threads,
    encode,
    pcm16,
    seconds,
    talk,
    wait_until_idle,
)
from support.speech import read_audio, wer


def test_pcm_at_real_time_gets_interim_buffers_then_committed_lines_that_match_the_reference(server, speech_long):
    conv = talk(server.url, chunks(speech_long.pcm, 3200), realtime=True)  # 100 ms chunks, wall clock

    assert_well_formed(conv)
    assert_finished(conv)
    assert conv.end_sent_at >= speech_long.duration - 0.5  # really paced at 1x
    while_speaking = [u for u, t in zip(conv.messages, conv.times) if "lines" in u and t < conv.end_sent_at]
    # Interim text shows up while the speaker talks, and is committed into lines as it goes,
    # not only once the audio ends.
    assert sum(1 for u in while_speaking if u["buffer_transcription"]) >= 10
    assert len(while_speaking[-1]["lines"]) >= 2
    first_text = next(t for u, t in zip(conv.messages, conv.times) if "lines" in u and u["buffer_transcription"])
    assert first_text < 3.0, "the first interim words come within seconds of speech"
    # The server keeps up: little audio waiting at any time, and the end comes promptly.
    remaining = [u["remaining_time_transcription"] for u in while_speaking]
    assert float(np.median(remaining)) < 1.5 and max(remaining) < 5.0, remaining
    assert conv.times[-1] - conv.end_sent_at < 5.0

    final = conv.messages[-2]
    assert final["status"] == "active_transcription"
    assert all(line["detected_language"] == "en" for line in final["lines"])
    starts = [seconds(line["start"]) for line in final["lines"]]
    assert starts == sorted(starts) and starts[0] <= 1
    assert abs(seconds(final["lines"][-1]["end"]) - speech_long.duration) <= 2
    error = wer(speech_long.text, conv.text())
    print(f"1x PCM stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.2, conv.text()
    assert wait_until_idle(server.url)["scheduler"]["streams"] == 0


# -- compressed browser audio ---------------------------------------------------------------


@pytest.mark.parametrize(
    "container,args,query,worklet",
    [
        ("webm", ["-c:a", "libopus", "-b:a", "32k"], "", True),  # Chrome/Firefox MediaRecorder
        ("ogg", ["-c:a", "libopus", "-b:a", "32k"], "?input=encoded", False),
        (
            "mp4",
            ["-c:a", "aac", "-b:a", "48k", "-movflags", "frag_keyframe+empty_moov"],
            "",
            True,
        ),  # Safari: fragmented
    ],
    ids=["webm-opus", "ogg-opus-input-encoded", "fragmented-mp4-aac"],
)
def test_compressed_browser_audio_streamed_in_pieces_is_decoded_and_transcribed(
    server, speech_mid, tmp_path, container, args, query, worklet
):
    data = encode(speech_mid.wav, tmp_path / f"speech.{container}", *args)
    conv = talk(server.url, chunks(data, 2000), query=query, interval=0.02)  # faster than 1x

    assert_well_formed(conv, worklet=worklet)
    assert_finished(conv)
    error = wer(speech_mid.text, conv.text())
    print(f"{container} stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.25, conv.text()
    wait_until_idle(server.url)
    assert decode_threads() == 0


def test_an_mp4_with_its_index_at_the_end_cannot_stream_and_gets_a_clear_error(server, speech_short, tmp_path):
    data = encode(speech_short.wav, tmp_path / "plain.mp4", "-c:a", "aac")  # moov after the audio: needs seeking
    conv = talk(server.url, chunks(data, 4000))
    assert conv.errors and "could not decode" in conv.errors[0]
    assert {"type": "ready_to_stop"} not in conv.messages
    assert conv.close_code == 1007
    wait_until_idle(server.url)


# -- the diff protocol ----------------------------------------------------------------------


def reconstruct(msg: dict, lines: list[dict]) -> dict:
    """WhisperLiveKit's documented client algorithm (docs/API.md, 'Diff Protocol')."""
    if msg["type"] == "snapshot":
        lines.clear()
        lines.extend(msg.get("lines", []))
        return msg
    if msg.get("lines_pruned", 0) > 0:
        del lines[: msg["lines_pruned"]]
    lines.extend(msg.get("new_lines", []))
    return {
        "lines": lines[:],
        "buffer_transcription": msg.get("buffer_transcription", ""),
        "remaining_time_transcription": msg.get("remaining_time_transcription", 0),
    }


def glued_words(buffers: list[str], transcript: str) -> list[str]:
    """Buffer words that are two adjacent transcript words run together ('morecompletely')."""
    from whisper_normalizer.english import EnglishTextNormalizer

    normalize = EnglishTextNormalizer()
    words = normalize(transcript).split()
    joined = {a + b for a, b in itertools.pairwise(words)} - set(words)
    return [w for buffer in buffers for w in normalize(buffer).split() if w in joined]


def test_diff_mode_sends_a_snapshot_then_diffs_that_rebuild_the_servers_lines(server, speech_mid, monkeypatch):
    from roomscribe.web import asr_socket

    truth: list[list[dict]] = []  # the full line list behind each update, as the server saw it
    state = asr_socket.AsrSession.state

    def recording(self):
        out = state(self)
        if self.mode == "diff":
            truth.append(json.loads(json.dumps(out["lines"])))
        return out

    monkeypatch.setattr(asr_socket.AsrSession, "state", recording)
    conv = talk(server.url, chunks(speech_mid.pcm, 3200), query="?mode=diff", interval=0.06)  # 1.7x

    assert_well_formed(conv, mode="diff")
    assert conv.messages[-1] == {"type": "ready_to_stop"} and conv.close_code == 1000
    updates = conv.messages[1:-1]
    assert updates[0]["type"] == "snapshot"
    # Later snapshots only where a line already sent changed (a revised final); diffs otherwise.
    for i, update in enumerate(updates[1:], 1):
        revised = truth[i][: len(truth[i - 1])] != truth[i - 1]
        assert update["type"] == ("snapshot" if revised else "diff"), (i, update)
    assert [u["seq"] for u in updates] == list(range(1, len(updates) + 1))
    assert len(updates) == len(truth)
    lines: list[dict] = []
    buffers = []
    for update, expected in zip(updates, truth):
        assert "lines" not in update or update["type"] == "snapshot"
        state_now = reconstruct(update, lines)
        if update["type"] == "diff":
            assert len(lines) == update["n_lines"], "out of sync"
            assert "new_lines" not in update or update["new_lines"]
        assert lines == expected
        buffers.append(state_now["buffer_transcription"])
    assert any(buffers), "interim text travels in the buffer"
    assert buffers[-1] == "" and updates[-1]["remaining_time_transcription"] == 0.0
    text = " ".join(line["text"] for line in lines)
    assert len(lines) >= 2
    error = wer(speech_mid.text, text)
    print(f"diff-mode WER {error:.3f}: {text}")
    assert error <= 0.25, text
    # An open line's committed words and its interim tail make one buffer, spaced as words.
    assert glued_words(buffers, text + " " + speech_mid.text) == []


# -- per-stream options -----------------------------------------------------------------------


def _final_lines(url: str, speech, query: str) -> list[dict]:
    conv = talk(url, chunks(speech.pcm, 3200), query=query, interval=0.03)
    assert_well_formed(conv)
    assert_finished(conv)
    return conv.messages[-2]["lines"]


def test_a_forced_language_is_accepted_and_carried_on_every_line(server, speech_short):
    lines = _final_lines(server.url, speech_short, "?language=ko")
    assert lines and all(line["detected_language"] == "ko" for line in lines)


def test_translated_captions_come_out_in_english(server, speech_short):
    lines = _final_lines(server.url, speech_short, "?task=translate")
    assert lines and all(line["detected_language"] == "en" for line in lines)
    assert wer(speech_short.text, " ".join(line["text"] for line in lines)) <= 0.25


def test_the_alignatt_policy_streams_the_same_speech(server, speech_mid):
    conv = talk(server.url, chunks(speech_mid.pcm, 3200), query="?policy=alignatt&language=en", interval=0.04)
    assert_well_formed(conv)
    assert_finished(conv)
    assert any(u["buffer_transcription"] for u in conv.updates)
    error = wer(speech_mid.text, conv.text())
    print(f"alignatt stream WER {error:.3f}: {conv.text()}")
    assert error <= 0.25, conv.text()


def test_set_language_mid_stream_switches_the_following_lines(server, eval_dir, manifest):
    first = pcm16(read_audio(eval_dir / LJ / "LJ001-0035.flac")) + bytes(16000)
    second = pcm16(read_audio(eval_dir / LJ / "LJ001-0174.flac")) + bytes(16000)
    frames = chunks(first, 3200) + [json.dumps({"type": "set_language", "language": "ko"})] + chunks(second, 3200)
    conv = talk(server.url, frames, query="?language=en", interval=0.03)
    assert_finished(conv)
    languages = [line["detected_language"] for line in conv.messages[-2]["lines"]]
    assert languages[0] == "en" and languages[-1] == "ko", languages
