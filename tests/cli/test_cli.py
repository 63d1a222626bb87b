"""The `roomscribe transcribe` command on real files and bad ones."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from support.speech import EVAL, wer

SAMPLE = EVAL / "asr/en/ljspeech/LJ001-0001.flac"


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "roomscribe.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def sample(eval_dir):
    return eval_dir / "asr/en/ljspeech/LJ001-0001.flac"


def test_offline_text(sample):
    out = run("transcribe", sample)
    assert out.returncode == 0, out.stderr
    assert "printing" in out.stdout.lower() and "exhibition" in out.stdout.lower()
    assert "RTF" in out.stderr


def test_offline_json_has_segments_words_and_language(sample):
    out = run("transcribe", sample, "--format", "json")
    doc = json.loads(out.stdout)
    assert doc["language"] == "en" and doc["segments"]
    assert doc["segments"][0]["words"][0]["start"] >= 0
    assert "processing_time" in doc


@pytest.mark.parametrize("fmt,marker", [("srt", "00:00:00,"), ("vtt", "WEBVTT")])
def test_offline_subtitle_formats(sample, fmt, marker):
    out = run("transcribe", sample, "--format", fmt)
    assert out.returncode == 0 and marker in out.stdout and "-->" in out.stdout


@pytest.mark.parametrize("policy", ["localagreement", "alignatt"])
def test_simulate_json_writes_one_event_per_line_on_the_audio_clock(sample, policy):
    out = run("transcribe", sample, "--simulate", "--clock", "aware", "--policy", policy, "--format", "json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert {e["type"] for e in events} == {"interim", "final"}
    for e in events:
        assert set(e) >= {"type", "text", "start", "end", "emitted_at"}
        assert 0 <= e["start"] <= e["end"] <= 8.5
    finals = [e for e in events if e["type"] == "final"]
    assert all(e["emitted_at"] >= e["end"] for e in finals)
    assert "exhibition" in " ".join(e["text"] for e in finals).lower()
    assert "latency" in out.stderr and "RTF" in out.stderr


def test_simulate_in_real_time_takes_as_long_as_the_audio(tmp_path, sample):
    clip = tmp_path / "clip.wav"
    audio, sr = sf.read(sample, dtype="float32")
    sf.write(clip, audio[: 3 * sr], sr)
    import time

    started = time.monotonic()
    out = run("transcribe", clip, "--simulate", "--format", "json")
    assert out.returncode == 0
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert events and max(e["emitted_at"] for e in events) >= 2.5
    assert time.monotonic() - started >= 3.0


def test_simulate_srt_output(sample):
    out = run("transcribe", sample, "--simulate", "--clock", "unaware", "--format", "srt")
    assert out.returncode == 0 and "-->" in out.stdout


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.write_bytes(b""), p)[1], "empty"),
        (lambda p: (p.write_bytes(np.random.default_rng(0).bytes(5000)), p)[1], "not a decodable audio file"),
        (lambda p: (p.write_text("hello, this is a text file\n" * 50), p)[1], "not a decodable audio file"),
    ],
)
def test_bad_files_fail_with_one_line_and_exit_code_2(tmp_path, make, message):
    path = make(tmp_path / "input.wav")
    for extra in ([], ["--simulate"]):
        out = run("transcribe", path, *extra)
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], out.stderr
        assert out.stdout == ""


def test_a_directory_is_not_an_audio_file(tmp_path):
    out = run("transcribe", tmp_path)
    assert out.returncode == 2 and "not a regular file" in out.stderr


def test_a_truncated_file_is_reported_or_transcribed_up_to_the_damage(tmp_path, sample):
    broken = tmp_path / "broken.flac"
    broken.write_bytes(sample.read_bytes()[:2000])
    out = run("transcribe", broken)
    assert out.returncode in (0, 2)
    if out.returncode == 2:
        assert len(out.stderr.strip().splitlines()) == 1


def test_espeak_speech_is_transcribed_without_the_eval_set(espeak_wav):
    # Whisper hears espeak's voice imperfectly, tiny.en most ("brown fox" as "round-fark", "dog"
    # as "nog", "should appear" as "showed up here": WER 0.54 on one machine, 0.3 on another).
    for model, bound in (("base", 0.35), ("tiny.en", 0.6)):
        out = run("transcribe", espeak_wav, "--simulate", "--clock", "unaware", "--model", model, "--format", "json")
        assert out.returncode == 0, out.stderr
        # The captions as they end up: a segment's finals, or its revised final where it has one.
        segments: dict[str, list[str]] = {}
        for event in map(json.loads, out.stdout.splitlines()):
            if event["type"] == "final":
                words = segments.setdefault(event["segment_id"], [])
                words[:] = [event["text"]] if event["revised"] else [*words, event["text"]]
        shown = " ".join(" ".join(words) for words in segments.values())
        assert wer("The quick brown fox jumps over the lazy dog. Captions should appear quickly.", shown) < bound, shown


def test_an_unknown_model_is_a_clear_error(sample):
    out = run("transcribe", sample, "--model", "/nonexistent/model/dir")
    assert out.returncode == 3
    assert "does not exist" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_the_agent_commands_run_through_python_dash_m():
    pytest.importorskip("livekit.agents")
    out = run("start", "--help", timeout=120)
    assert out.returncode == 0, out.stderr
    assert "--help" in out.stdout


def test_a_language_given_by_name_is_taken_and_an_unknown_one_refused(sample):
    out = run("transcribe", sample, "--language", "English")
    assert out.returncode == 0, out.stderr
    assert "language en" in out.stderr
    out = run("transcribe", sample, "--language", "klingon")
    assert out.returncode == 2 and "unknown language 'klingon'" in out.stderr
