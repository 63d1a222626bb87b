"""File transcription on `roomscribe serve`: `POST /transcribe`, the OpenAI-compatible
`POST /v1/audio/transcriptions` (through the `openai` client library), progress lines, the
`roomscribe transcribe --server` client, errors and limits, auth, and the status routes.

WER: whisper_normalizer's EnglishTextNormalizer on both sides, then jiwer.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
import soundfile as sf

from support.speech import wer
from support.uploads import (
    ENCODINGS,
    assert_transcript,
    form,
    post_json,
    silent_wav,
)


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_every_accepted_format_transcribes_with_segments_words_and_timing(server, clip, encoded, name):
    _path, reference, duration = clip
    status, doc = post_json(server.url + "/transcribe", data=form(encoded[name].read_bytes(), encoded[name].name))
    assert status == 200, doc
    error = assert_transcript(doc, reference, duration)
    print(f"{name} WER {error:.3f}: {doc['text']}")


def test_a_raw_audio_body_transcribes_with_query_options(server, clip, encoded):
    _path, reference, duration = clip
    status, doc = post_json(
        server.url + "/transcribe?language=en&prompt=Typography.",
        data=encoded["mp3"].read_bytes(),
        headers={"Content-Type": "audio/mpeg"},
    )
    assert status == 200, doc
    assert_transcript(doc, reference, duration)


# -- the OpenAI-compatible endpoint, through OpenAI's own client ----------------------------------


@pytest.fixture(scope="module")
def openai_client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)


@pytest.mark.parametrize("fmt", ["json", "verbose_json", "text", "srt", "vtt"])
def test_the_openai_client_gets_each_response_format(openai_client, clip, fmt):
    path, reference, duration = clip
    with open(path, "rb") as audio:
        result = openai_client.audio.transcriptions.create(
            model="whisper-1", file=audio, response_format=fmt, language="en"
        )
    if fmt == "json":
        text = result.text
    elif fmt == "verbose_json":
        text = result.text
        assert result.language == "en" and abs(result.duration - duration) < 0.1
        assert result.segments and result.words
        assert all(s.start <= s.end and s.text.strip() for s in result.segments)
        assert all(0 <= w.start <= w.end <= duration + 0.5 and w.word for w in result.words)
        assert [s.id for s in result.segments] == list(range(len(result.segments)))
    else:
        assert isinstance(result, str)
        text = result
        if fmt == "srt":
            assert result.startswith("1\n00:00:0") and " --> " in result and "," in result.splitlines()[1]
            text = " ".join(line for line in result.splitlines() if line and "-->" not in line and not line.isdigit())
        elif fmt == "vtt":
            assert result.startswith("WEBVTT\n\n00:00:0") and " --> " in result
            text = " ".join(line for line in result.splitlines()[1:] if line and "-->" not in line)
    error = wer(reference, text)
    print(f"openai {fmt} WER {error:.3f}: {text!r}")
    assert error <= 0.2, text


def test_the_openai_client_gets_english_from_the_translations_route(openai_client, clip):
    path, reference, _ = clip
    with open(path, "rb") as audio:
        result = openai_client.audio.translations.create(model="whisper-1", file=audio, response_format="verbose_json")
    assert result.segments and result.text
    assert result.model_extra.get("task") == "translate"
    assert wer(reference, result.text) <= 0.2, result.text  # English heard, English written


def test_the_openai_client_sees_a_bad_request_as_its_own_error(openai_client, clip):
    import openai

    with open(clip[0], "rb") as audio, pytest.raises(openai.BadRequestError) as refused:
        openai_client.audio.transcriptions.create(model="whisper-1", file=audio, language="klingon")
    assert "unknown language" in refused.value.message
    assert "unknown language" in refused.value.body["message"]


def test_the_openai_client_lists_the_model(openai_client, engine):
    assert [m.id for m in openai_client.models.list()] == [engine.model_name]


# -- progress --------------------------------------------------------------------------------


def read_ndjson(url: str, **kwargs) -> tuple[int, str, list[dict]]:
    async def run():
        async with aiohttp.ClientSession() as http, http.post(url, **kwargs) as response:
            lines = [json.loads(raw) async for raw in response.content if raw.strip()]
            return response.status, response.content_type, lines

    return asyncio.run(run())


def test_progress_lines_are_monotonic_and_end_with_the_result(server, two_sentences):
    path, reference = two_sentences
    total = sf.info(path).duration
    status, kind, lines = read_ndjson(server.url + "/transcribe?progress=true", data=form(path.read_bytes(), path.name))
    assert status == 200 and kind == "application/x-ndjson"
    *progress, result = lines
    assert len(progress) >= 2 and all(line["type"] == "progress" for line in progress)
    assert progress[0] == {"type": "progress", "done": 0.0, "total": round(total, 1)}
    done = [line["done"] for line in progress]
    assert done == sorted(done) and done[-1] <= progress[0]["total"] and done[-1] > 0
    assert all(line["total"] == progress[0]["total"] for line in progress)
    assert result["type"] == "result"
    error = assert_transcript(result, reference, total)
    print(f"progress result WER {error:.3f}")


def test_an_ndjson_accept_header_asks_for_progress_too(server, clip, encoded):
    status, kind, lines = read_ndjson(
        server.url + "/transcribe",
        data=encoded["flac"].read_bytes(),
        headers={"Content-Type": "audio/flac", "Accept": "application/x-ndjson"},
    )
    assert status == 200 and kind == "application/x-ndjson"
    assert lines[0]["type"] == "progress" and lines[-1]["type"] == "result"
    assert wer(clip[1], lines[-1]["text"]) <= 0.2


def test_the_cli_transcribes_a_file_on_a_running_server(server, two_sentences, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    path, reference = two_sentences
    assert main(["transcribe", str(path), "--server", server.url]) == 0
    out, err = capsys.readouterr()
    error = wer(reference, out)
    print(f"cli WER {error:.3f}")
    assert error <= 0.2, out
    assert f"on {server.url}, language en" in err


def test_the_cli_renders_subtitles_from_the_server(server, clip, encoded, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    assert (
        main(["transcribe", str(encoded["m4a"]), "--server", server.url + "/", "--format", "srt", "--language", "en"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("1\n00:00:0") and "-->" in out


def test_the_cli_reports_what_the_server_refused(server, tmp_path, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio at all\n" * 20)
    assert main(["transcribe", str(notes), "--server", server.url]) == 2
    err = capsys.readouterr().err
    assert "the server said" in err and "not a supported audio format" in err


def test_the_cli_reports_an_unreachable_server(tmp_path, capsys, monkeypatch):
    from roomscribe.cli import main

    monkeypatch.delenv("ROOMSCRIBE_API_KEY", raising=False)
    audio = tmp_path / "a.wav"
    audio.write_bytes(silent_wav())
    assert main(["transcribe", str(audio), "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
