"""Stages run in order before the sinks; a broken stage or sink harms no other; interims
are throttled while finals always pass."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from roomscribe.session import Caption, InterimThrottle, Pipeline, Stage


def _caption(text: str, final: bool = False, segment: str = "SG_1") -> Caption:
    return Caption(
        participant="ann", segment_id=segment, text=text if final else "", tail="" if final else text, final=final
    )


class Upper(Stage):
    def process(self, caption, emit):
        emit(replace(caption, text=caption.text.upper(), tail=caption.tail.upper()))


class Split(Stage):
    """Two captions out of each final one, as a speaker change would make."""

    def process(self, caption, emit):
        if not caption.final:
            emit(caption)
            return
        first, second = caption.text.split(" ", 1)
        emit(replace(caption, text=first, segment_id=caption.segment_id + "a"))
        emit(replace(caption, text=second, segment_id=caption.segment_id + "b"))


class Broken(Stage):
    def process(self, caption, emit):
        raise RuntimeError("stage down")


def test_stages_run_in_order_and_every_sink_sees_what_they_let_through():
    seen_a, seen_b = [], []
    pipeline = Pipeline([Split(), Upper()], [seen_a.append, seen_b.append])
    pipeline.send(_caption("hello there", final=True))
    assert [(c.segment_id, c.text) for c in seen_a] == [("SG_1a", "HELLO"), ("SG_1b", "THERE")]
    assert seen_a == seen_b


def test_a_broken_stage_passes_the_caption_on_and_a_broken_sink_spares_the_others(caplog):
    seen = []

    def broken_sink(caption):
        raise OSError("sink down")

    pipeline = Pipeline([Broken(), Upper()], [broken_sink, seen.append])
    with caplog.at_level(logging.ERROR, logger="roomscribe.session"):
        pipeline.send(_caption("hi", final=True))
    assert [c.text for c in seen] == ["HI"]
    assert "stage Broken failed" in caplog.text and "sink" in caplog.text


def test_throttled_interims_keep_the_latest_and_a_final_supersedes_the_held_one():
    async def scenario():
        now = [0.0]
        seen: list[Caption] = []
        throttle = InterimThrottle(0.25, clock=lambda: now[0])
        pipeline = Pipeline([throttle], [seen.append])
        pipeline.send(_caption("a"))  # first one goes at once
        pipeline.send(_caption("a b"))  # held
        pipeline.send(_caption("a b c"))  # replaces the held one
        assert [c.tail for c in seen] == ["a"]
        now[0] = 0.3
        await asyncio.sleep(0.3)
        assert [c.tail for c in seen] == ["a", "a b c"]
        pipeline.send(_caption("a b c d"))  # held again
        pipeline.send(_caption("a b c d.", final=True))
        await asyncio.sleep(0.3)
        return [(c.text or c.tail, c.final) for c in seen]

    assert asyncio.run(scenario()) == [("a", False), ("a b c", False), ("a b c d.", True)]


def test_an_infinite_interval_lets_only_finals_through():
    seen = []
    pipeline = Pipeline([InterimThrottle(float("inf"))], [seen.append])
    pipeline.send(_caption("typing"))
    pipeline.send(_caption("done.", final=True))
    assert [(c.text, c.final) for c in seen] == [("done.", True)]
