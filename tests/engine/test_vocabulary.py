"""A stream's prompt: words to expect, kept at the head of the decoder's context, never
captioned by themselves."""

from __future__ import annotations

import numpy as np
import pytest

from roomscribe.engine import StreamConfig
from roomscribe.engine.simulation import simulate
from roomscribe.engine.whisper import DecodeRequest
from support.speech import LJ, normalize, read_audio

NAMES = "Subiaco, Jenson, Schussler"


def test_the_prompt_stays_at_the_head_of_the_context_however_long_the_stream(engine):
    runner = engine.runner
    pinned = runner.encode_text(" " + NAMES)
    earlier = list(range(1000, 1300))
    context = runner._context(earlier, pinned)
    assert (
        context[: len(pinned)] == pinned
        and context[len(pinned) :] == earlier[len(earlier) - len(context) + len(pinned) :]
    )
    assert len(context) <= runner.options.max_prompt_tokens
    assert len(context) % 32 == 0  # the batching quantum, where the earlier text allows
    with pytest.raises(ValueError, match="prompt"):
        StreamConfig(prompt="x" * 501)


def test_a_listed_name_is_heard_and_the_list_is_never_captioned_by_itself(engine, eval_dir):
    said = simulate(engine, read_audio(eval_dir / LJ / "LJ001-0064.flac"), StreamConfig(prompt=NAMES), mode="aware")
    assert "subiaco" in normalize(said.text()).split(), said.text()
    for clip in ("LJ001-0009.flac", "LJ002-0012.flac"):
        other = simulate(engine, read_audio(eval_dir / LJ / clip), StreamConfig(prompt=NAMES), mode="aware")
        heard = set(normalize(other.text()).split())
        assert not heard & {"subiaco", "jenson", "schussler"}, other.text()
    silence = simulate(engine, np.zeros(16000 * 5, np.float32), StreamConfig(prompt=NAMES), mode="aware")
    assert silence.text() == ""


def test_a_request_carries_the_prompt_apart_from_the_streams_own_text(engine, eval_dir):
    stream = engine.open_stream(StreamConfig(language="en", prompt=NAMES))
    stream.push(read_audio(eval_dir / LJ / "LJ001-0064.flac")[: 16000 * 2])
    ticket = stream.next_request()
    assert isinstance(ticket.request, DecodeRequest)
    assert engine.runner.decode_tokens(ticket.request.pinned).strip() == NAMES
    assert ticket.request.prompt == []
    stream.set_prompt("Chiswick")
    assert engine.runner.decode_tokens(stream._pinned).strip() == "Chiswick"
