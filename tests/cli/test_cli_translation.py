"""`roomscribe transcribe FILE --translate-to`: translated json, one subtitle file per language
with `-o`, a chosen language on stdout, and the errors.

The translations come from the real packaged model (`roomscribe[translate]`) on one short
English clip, and are checked for words a Spanish translation of it must have.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CLIP = "asr/en/ljspeech/LJ001-0107.flac"  # 4.3 s: "To say a few words on the principles of design in typography:"


def run(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "roomscribe.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def spanish(text: str) -> bool:
    lowered = text.lower()
    return (
        "principios" in lowered
        and ("tipograf" in lowered or "diseñ" in lowered)
        and not any(word in lowered.split() for word in ("the", "principles", "words", "say"))
    )


def subtitle_text(srt: str) -> str:
    return " ".join(line for line in srt.splitlines() if line and "-->" not in line and not line.isdigit())


@pytest.fixture(scope="module")
def clip(eval_dir):
    return eval_dir / CLIP


@pytest.mark.usefixtures("translate_extra")
def test_json_segments_carry_their_spanish_translation(clip):
    out = run("transcribe", clip, "--translate-to", "es", "--format", "json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["language"] == "en" and doc["segments"]
    assert all(set(s["translations"]) == {"es"} for s in doc["segments"])
    assert spanish(doc["translations"]["es"]), doc["translations"]
    assert "translating 1 segment(s) into es" in out.stderr


@pytest.mark.usefixtures("translate_extra")
def test_srt_with_an_output_file_writes_one_file_per_language_next_to_it(clip, tmp_path):
    target = tmp_path / "talk.srt"
    out = run("transcribe", clip, "--translate-to", "Spanish", "--format", "srt", "-o", target)
    assert out.returncode == 0, out.stderr
    assert out.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.es.srt", "talk.srt"]
    assert f"wrote {target}, {tmp_path / 'talk.es.srt'}" in out.stderr
    spoken, translated = target.read_text(), (tmp_path / "talk.es.srt").read_text()
    assert "principles" in subtitle_text(spoken).lower()
    assert spanish(subtitle_text(translated)), translated
    # The same cues, in either language.
    assert [line for line in spoken.splitlines() if "-->" in line] == [
        line for line in translated.splitlines() if "-->" in line
    ]


@pytest.mark.usefixtures("translate_extra")
def test_a_subtitle_language_prints_that_translation(clip):
    out = run("transcribe", clip, "--translate-to", "es", "--subtitle-language", "es")
    assert out.returncode == 0, out.stderr
    assert spanish(out.stdout), out.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--translate-to", "klingon"], "--translate-to: unknown language 'klingon'"),
        (["--translate-to", "es", "--translate-to", "auto"], "must be a language, not 'auto'"),
        (["--translate-to", "es", "--subtitle-language", "fr"], "--subtitle-language fr is not among --translate-to"),
        (["--subtitle-language", "es"], "--subtitle-language es is not among --translate-to (none)"),
        (["--translate-to", "es", "--subtitle-language", "es", "--format", "json"], "is for --format text, srt or vtt"),
        (["--translate-to", "es", "--format", "rttm"], "needs --format json, text, srt or vtt"),
        (["--translate-to", "es", "--simulate"], "leave out --simulate"),
    ],
)
def test_bad_translation_options_fail_in_one_line_with_exit_code_2(clip, args, message):
    out = run("transcribe", clip, *args)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""


def test_without_a_translator_the_error_says_what_to_install(clip, tmp_path):
    out = run(
        "transcribe", clip, "--translate-to", "es", "-o", tmp_path / "out.srt", env={"ROOMSCRIBE_TRANSLATOR": "off"}
    )
    assert out.returncode == 2
    assert "no translator: pip install 'roomscribe[translate]'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


@pytest.mark.usefixtures("translate_extra")
def test_a_missing_translation_model_is_a_clear_error(clip, tmp_path):
    missing = tmp_path / "nowhere.gguf"
    out = run("transcribe", clip, "--translate-to", "es", env={"ROOMSCRIBE_TRANSLATOR_MODEL": str(missing)})
    assert out.returncode == 2, out.stderr
    assert f"translation model not found: {missing}" in out.stderr.splitlines()[-1]
    assert out.stdout == ""
