"""The process's translation queue: order, replacement, dropping, failures, delivery."""

from __future__ import annotations

import asyncio
import threading

from roomscribe.translation import TranslationJob, TranslationRequest, TranslationService
from support.translators import ScriptedTranslator


def request(text: str, target: str = "ko") -> TranslationRequest:
    return TranslationRequest(text, "en", target)


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_results_come_back_on_the_submitting_loop_in_order_with_the_time_waited():
    translator = ScriptedTranslator(delay=0.02)
    service = TranslationService(translator)
    got: list[tuple[str, float, int]] = []

    async def scenario():
        for i in range(3):
            service.submit(
                TranslationJob(
                    ("s", i, "ko"), request(f"sentence {i}"), lambda t, w: got.append((t, w, threading.get_ident()))
                )
            )
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    assert [t for t, _, _ in got] == ["[ko] sentence 0", "[ko] sentence 1", "[ko] sentence 2"]
    assert all(w > 0 for _, w, _ in got)
    assert {ident for _, _, ident in got} == {threading.get_ident()}
    assert service.status()["translated"] == 3 and service.status()["lag_p50"] is not None
    assert translator.closed


def test_a_newer_job_for_the_same_segment_and_language_replaces_a_queued_one():
    translator = ScriptedTranslator(delay=0.05)
    service = TranslationService(translator)
    got: list[str] = []

    async def scenario():
        service.submit(TranslationJob(("s", 0, "ko"), request("busy"), lambda t, w: got.append(t)))
        await until(lambda: translator.requests)
        service.submit(TranslationJob(("s", 1, "ko"), request("first text"), lambda t, w: got.append(t)))
        service.submit(TranslationJob(("s", 1, "ko"), request("revised text"), lambda t, w: got.append(t)))
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    assert got == ["[ko] busy", "[ko] revised text"]
    assert service.status()["replaced"] == 1


def test_finals_go_before_provisional_work_and_a_final_that_waited_too_long_is_dropped():
    translator = ScriptedTranslator(delay=0.05)
    service = TranslationService(translator, max_wait=0.08)
    got: list[str] = []

    async def scenario():
        service.submit(TranslationJob(("s", 0, "ko"), request("busy"), lambda t, w: got.append(t)))
        await until(lambda: translator.requests)
        service.submit(TranslationJob(("s", 1, "ko"), request("interim"), lambda t, w: got.append(t), provisional=True))
        service.submit(TranslationJob(("s", 2, "ko"), request("final"), lambda t, w: got.append(t)))
        await service.drain(5)
        # Behind by more than max_wait: the oldest finals are dropped, the newest still run.
        for i in range(4):
            service.submit(TranslationJob(("s", 10 + i, "ko"), request(f"late {i}"), lambda t, w: got.append(t)))
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    assert got[:3] == ["[ko] busy", "[ko] final", "[ko] interim"]
    assert "[ko] late 0" in got and service.status()["dropped"] >= 1
    assert len(got) < 7


def test_a_failing_or_hanging_backend_is_reported_and_the_queue_goes_on():
    translator = ScriptedTranslator()
    service = TranslationService(translator, timeout=0.2)
    states: list[tuple[str, str | None]] = []
    got: list[str] = []

    async def scenario():
        service.add_state_listener(lambda state, error: states.append((state, error)))
        translator.fail = True
        service.submit(TranslationJob(("s", 0, "ko"), request("one"), lambda t, w: got.append(t)))
        await service.drain(5)
        translator.fail, translator.hang = False, True
        service.submit(TranslationJob(("s", 1, "ko"), request("two"), lambda t, w: got.append(t)))
        await service.drain(5)
        translator.hang = False
        service.submit(TranslationJob(("s", 2, "ko"), request("three"), lambda t, w: got.append(t)))
        await service.drain(5)
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    service.close()
    status = service.status()
    assert got == ["[ko] three"]
    assert status["failed"] == 1 and status["timed_out"] == 1 and status["state"] == "ok"
    assert states[0][0] == "failing" and "the backend is down" in states[0][1]
    assert states[-1] == ("ok", None)
    assert "longer than" in status["last_error"]


def test_a_backend_that_finishes_what_it_began_is_delivered_late_and_its_load_is_not_timed():
    # llama.cpp cannot stop a request it has begun: giving it up at the timeout would waste the
    # work and start the next job's clock behind it.
    translator = ScriptedTranslator(delay=0.3, load_delay=0.5)
    translator.cancellable = False
    service = TranslationService(translator, timeout=0.2)
    got: list[str] = []

    async def scenario():
        for i in range(2):
            service.submit(TranslationJob(("s", i, "ko"), request(f"slow {i}"), lambda t, w: got.append(t)))
        await service.drain(5)

    asyncio.run(scenario())
    service.close()
    status = service.status()
    assert got == ["[ko] slow 0", "[ko] slow 1"]
    assert status["timed_out"] == 2 and status["failed"] == 0 and status["state"] == "ok"
    assert "longer than" in status["last_error"]
    assert translator.prepared == 1  # loaded once, before the first job's clock started
