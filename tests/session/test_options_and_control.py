"""One parser for what clients ask: languages (codes, tags, names, detection), policies,
tasks, and the control messages every door shares."""

from __future__ import annotations

import pytest

from roomscribe.session.control import ControlError, Pause, Ping, Resume, SetLanguage, Stop, parse_control
from roomscribe.session.options import OptionsError, parse_language, parse_policy, parse_task


@pytest.mark.parametrize(
    "given, code",
    [
        (None, None),
        ("auto", None),
        ("", None),
        ("multi", None),
        ("Detect", None),
        ("EN", "en"),
        ("ko-KR", "ko"),
        ("en_US", "en"),
        ("english", "en"),
        ("Korean", "ko"),
        ("한국어", "ko"),
        ("zh-Hant", "zh"),
        ("jv", "jw"),
    ],
)
def test_client_language_choices_become_whisper_codes(given, code):
    assert parse_language(given) == code


@pytest.mark.parametrize("given", ["xx", "english-please", "klingon"])
def test_unknown_language_is_refused_with_a_clear_error(given):
    with pytest.raises(OptionsError, match=f"unknown language '{given}'"):
        parse_language(given)


def test_a_language_that_is_not_text_is_refused_naming_the_field():
    with pytest.raises(OptionsError, match="language of 'kim' must be a language code"):
        parse_language(7, "language of 'kim'")


def test_policies_and_tasks_come_from_one_list():
    assert parse_policy("AlignAtt") == "alignatt" and parse_policy("localagreement") == "localagreement"
    assert parse_task(None) == "transcribe" and parse_task("TRANSLATE") == "translate"
    with pytest.raises(OptionsError, match="policy must be one of localagreement, alignatt"):
        parse_policy("greedy")
    with pytest.raises(OptionsError, match="task must be transcribe or translate"):
        parse_task("summarise")


def test_control_messages_parse_into_their_kinds():
    assert parse_control(b'{"type": "pause"}') == Pause()
    assert parse_control('{"type": "resume"}') == Resume()
    assert parse_control('{"type": "stop"}') == Stop()
    assert parse_control('{"type": "ping", "t": 5}') == Ping(5)
    assert parse_control(b'{"type": "set_language", "participant": "kim", "language": "ko"}') == SetLanguage(
        "ko", "kim"
    )
    assert parse_control(b'{"type": "set_language", "language": "auto"}') == SetLanguage(None)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object with a 'type'"),
        (b'{"type": "reboot"}', "unknown message type 'reboot'"),
        (b'{"type": "set_language"}', "needs a language"),
        (b'{"type": "set_language", "language": "xx"}', "unknown language"),
        (b'{"type": "set_language", "participant": 3, "language": "en"}', "participant identity"),
        (b"\xff\xfe", "not JSON"),
        (b'{"type": "pause", "pad": "' + b"x" * 5000 + b'"}', "at most 4096"),
    ],
)
def test_bad_control_messages_are_errors_that_say_what_is_wrong(payload, message):
    with pytest.raises(ControlError, match=message):
        parse_control(payload)


def test_a_door_refuses_kinds_it_does_not_act_on_and_names_those_it_does():
    with pytest.raises(ControlError, match="known here: set_language, stop"):
        parse_control('{"type": "pause"}', accepted=(SetLanguage, Stop))
