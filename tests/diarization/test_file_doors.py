"""Speakers through the file doors: `roomscribe transcribe --diarize`, `POST /transcribe` and
the OpenAI route's `verbose_json`, on a real recording with two voices."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest
import soundfile as sf

from support.uploads import form, post_json


def run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "roomscribe.cli", *map(str, args)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def mixed_wav(mixed_track, tmp_path_factory):
    path = tmp_path_factory.mktemp("voices") / "two_voices.wav"
    sf.write(path, mixed_track.audio, 16000)
    return path


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-speakers", "0"], "num-speakers must be a whole number of at least 1"),
        (["--diarize", "--min-speakers", "3", "--max-speakers", "2"], "min-speakers (3) is more than max-speakers (2)"),
        (["--num-speakers", "2", "--max-speakers", "3"], "not both"),
    ],
)
def test_the_cli_refuses_bad_speaker_hints_in_one_line(mixed_wav, args, message):
    out = run("transcribe", mixed_wav, *args)
    assert out.returncode == 2
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


@pytest.mark.usefixtures("diarization_extra")
def test_the_cli_labels_a_file_s_speakers_in_json_and_rttm(mixed_wav):
    out = run("transcribe", mixed_wav, "--diarize", "--language", "en", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["has_diarization"] is True and doc["total_speakers"] == 2
    assert set(doc["speakers"]) == {"S1", "S2"}
    for summary in doc["speakers"].values():
        assert summary["total_duration"] > 5 and summary["segments_count"] >= 1 and summary["text_parts"]
    assert all(seg["speaker"] in ("S1", "S2") for seg in doc["segments"])
    rttm = run("transcribe", mixed_wav, "--diarize", "--language", "en", "--format", "rttm")
    lines = rttm.stdout.strip().splitlines()
    assert lines and all(line.startswith("SPEAKER audio 1 ") for line in lines)
    assert {line.split()[7] for line in lines} == {"S1", "S2"}


@pytest.mark.usefixtures("diarization_extra")
def test_the_cli_simulation_puts_a_speaker_on_every_final(mixed_wav):
    out = run("transcribe", mixed_wav, "--simulate", "--clock", "unaware", "--diarize", "--format", "json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    finals = [e for e in events if e["type"] == "final" and e["text"]]
    assert finals and all(e["speaker"] in ("S1", "S2") for e in finals)
    assert {e["speaker"] for e in finals} == {"S1", "S2"}


def test_the_server_refuses_bad_speaker_hints_before_decoding(server, mixed_wav):
    status, doc = post_json(
        server.url + "/transcribe?diarize=true&num_speakers=many", data=form(mixed_wav.read_bytes(), "a.wav")
    )
    assert status == 400 and "num_speakers must be a whole number" in doc["error"]["message"]


@pytest.mark.usefixtures("diarization_extra")
def test_the_server_returns_segments_with_speakers_and_a_summary(server, mixed_wav):
    status, doc = post_json(
        server.url + "/transcribe", data=form(mixed_wav.read_bytes(), "a.wav", diarize="true", language="en")
    )
    assert status == 200, doc
    assert doc["has_diarization"] and doc["total_speakers"] == 2
    assert {seg["speaker"] for seg in doc["segments"]} == {"S1", "S2"}
    assert all(w["speaker"] == seg["speaker"] for seg in doc["segments"] for w in seg["words"])


@pytest.mark.usefixtures("diarization_extra")
def test_the_openai_route_gives_speakers_in_verbose_json(server, mixed_wav):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=("a.wav", io.BytesIO(mixed_wav.read_bytes())),
        response_format="verbose_json",
        extra_body={"diarize": "true", "num_speakers": "2"},
    )
    doc = result.model_dump()
    assert {s["speaker"] for s in doc["segments"]} == {"S1", "S2"}
    assert doc["total_speakers"] == 2
