"""How many simultaneous tracks one process captions in real time: Whisper base, 1x.

N tracks from ../shared/eval are pushed at 1x in 40 ms frames into one shared engine
through the process's scheduler (`roomscribe.session.scheduler.EngineWorker`, as the caption
agent and the plugin use it), in two shapes:

- continuous: all N speak without pause (read speech clips back to back, 0.25 s apart,
  each track in its own order);
- meeting: N participants taking turns (clips of read speech), one speaking at a time
  and sometimes two; of the rest, half are unmuted and silent (a faint noise floor) and
  half muted (no audio at all) until their turn.

Measured per run: final-caption latency (the moment a final came out minus the moment
the audio of its last word was pushed) p50/p90 over the run and per third of it (does
it grow?), the scheduler's worst lag and slow-down level over time, WER against the
clips' text, model calls and windows per call, and RSS. A run passes when p90 <= 3 s,
the last third's p50 is within 0.5 s of the first third's, and every track's last
final is out within 10 s of the end. Each run is its own process (clean RSS); RSS per
extra stream is the slope of RSS over N. Every N runs with batching on and off
(`max_batch` 8 or 1: one window per model call, as per-connection decoders do).

    python bench/concurrency.py [--seconds 90] [--continuous 1,2,4,6,8,10] [--meeting 8,16,32,48,64]
    python bench/concurrency.py --one meeting 16 batched --seconds 30   # one run, JSON out
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time

import numpy as np
from common import load, machine, manifest, rss_mb, save, wer

from roomscribe.stats import percentile  # noqa: E402

FRAME = 640  # 40 ms at 16 kHz
GAP = 0.25  # between clips of a continuous speaker: shorter than the VAD's end of speech
P90_BOUND, GROWTH_BOUND, DRAIN_BOUND = 3.0, 0.5, 10.0


def clips() -> list[tuple[np.ndarray, str]]:
    entries = [e for e in manifest() if e["task"] == "asr" and e.get("reference_text")]
    return [(load(e), e["reference_text"]) for e in sorted(entries, key=lambda e: e["audio"])]


class Track:
    """One participant's audio on the wall clock: `None` where they are muted."""

    def __init__(self, seconds: float, silent: bool, seed: int):
        n = int(seconds * 16000)
        rng = np.random.default_rng(seed)
        self.audio = (rng.standard_normal(n) * 3e-4).astype(np.float32) if silent else np.zeros(n, np.float32)
        self.live = np.full(n // FRAME + 1, silent)  # per frame: is audio pushed?
        self.texts: list[str] = []

    def say(self, start: float, clip: np.ndarray, text: str) -> None:
        a = int(start * 16000)
        self.audio[a : a + len(clip)] += clip[: len(self.audio) - a]
        # Unmuted for the turn and a second after it (people mute once they are done).
        self.live[a // FRAME : (a + len(clip) + 16000) // FRAME + 1] = True
        self.texts.append(text)


def continuous(n: int, seconds: float, pool) -> list[Track]:
    tracks = []
    for i in range(n):
        track, t, k = Track(seconds, True, i), 0.3 + 0.17 * i, 5 * i
        while True:
            clip, text = pool[k % len(pool)]
            if t + len(clip) / 16000 > seconds - 0.5:
                break
            track.say(t, clip, text)
            t, k = t + len(clip) / 16000 + GAP, k + 1
        tracks.append(track)
    return tracks


def meeting(n: int, seconds: float, pool, seed: int = 7) -> list[Track]:
    rng = np.random.default_rng(seed)
    tracks = [Track(seconds, i % 2 == 0, i) for i in range(n)]
    t, k, last = 1.0, 0, -1
    while True:
        clip, text = pool[k % len(pool)]
        length = len(clip) / 16000
        if t + length > seconds - 1.0:
            break
        speaker = int(rng.choice([i for i in range(n) if i != last] or [0]))
        tracks[speaker].say(t, clip, text)
        k += 1
        if n > 1 and rng.random() < 0.3:  # someone talks over the second half
            other = int(rng.choice([i for i in range(n) if i != speaker]))
            clip2, text2 = pool[k % len(pool)]
            if t + length / 2 + len(clip2) / 16000 < seconds - 1.0:
                tracks[other].say(t + length / 2, clip2, text2)
                k += 1
                length = max(length, length / 2 + len(clip2) / 16000)
        t, last = t + length + rng.uniform(0.4, 1.2), speaker
    return tracks


def run_one(shape: str, n: int, mode: str, seconds: float, policy: str, level: int | None = None) -> dict:
    """One run; `level` pins the scheduler's slow-down level (to price each level's accuracy)."""
    from roomscribe.engine import Engine, EngineConfig, EventType, StreamConfig
    from roomscribe.engine.simulation import SimulationResult
    from roomscribe.session.governor import LEVELS, LagGovernor
    from roomscribe.session.scheduler import Drained, EngineWorker

    pool = clips()
    tracks = (continuous if shape == "continuous" else meeting)(n, seconds, pool)
    engine = Engine(EngineConfig(model="base", max_batch=8 if mode == "batched" else 1))
    engine.transcribe(pool[0][0][: 16000 * 3], language="en")  # warm-up
    worker = EngineWorker(engine, LagGovernor(levels=(LEVELS[level],)) if level is not None else None)
    rss_idle = rss_mb()

    finals: list[list[tuple[float, object]]] = [[] for _ in tracks]
    drained = [threading.Event() for _ in tracks]

    def deliver(i):
        def on_item(handle, item):
            if isinstance(item, Drained):
                drained[i].set()
            elif getattr(item, "type", None) == EventType.FINAL:
                finals[i].append((time.monotonic(), item))
            return True

        return on_item

    config = StreamConfig(policy=policy, language="en")
    handles = [worker.open(config, deliver(i)) for i in range(n)]
    # A muted track pushes nothing, so its stream clock stops: map stream time to wall time.
    resumed: list[list[tuple[float, float]]] = [[] for _ in tracks]
    pushed = [0] * n
    timeline, calls0 = [], engine.runner.calls
    t0 = time.monotonic()
    frames = int(seconds * 16000) // FRAME
    next_status = 1.0
    for f in range(frames):
        delay = t0 + (f + 1) * FRAME / 16000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for i, track in enumerate(tracks):
            if not track.live[f]:
                continue
            if f == 0 or not track.live[f - 1]:
                resumed[i].append((pushed[i] / 16000, f * FRAME / 16000))
            worker.push(handles[i], track.audio[f * FRAME : (f + 1) * FRAME])
            pushed[i] += FRAME
        if f * FRAME / 16000 >= next_status:
            status = worker.status()
            timeline.append(
                {
                    "t": round(f * FRAME / 16000, 1),
                    "max_lag": status["max_lag"],
                    "level": status["level"],
                    "busy": status["busy"],
                }
            )
            next_status += 1.0
    ended = time.monotonic()
    for h in handles:
        worker.end(h)
    all_drained = all(d.wait(max(5.0, 3 * seconds)) for d in drained)
    drain_seconds = time.monotonic() - ended
    rss_end = rss_mb()

    def wall(i: int, stream_time: float) -> float:
        starts = [r for r in resumed[i] if r[0] <= stream_time] or resumed[i][:1]
        s, w = starts[-1]
        return t0 + w + (stream_time - s)

    # A revised final (a second hearing) replaces its segment later: not a first caption's latency.
    latencies = [
        (at - t0, at - wall(i, e.end)) for i, fs in enumerate(finals) for at, e in fs if e.words and not e.revision
    ]
    latencies.sort()
    values = [v for _, v in latencies]
    third = seconds / 3
    first = [v for t, v in latencies if t < third]
    last = [v for t, v in latencies if t >= 2 * third]
    refs = [" ".join(t.texts) for t in tracks if t.texts]
    # The captions as they end up: each segment's text, revised where it was.
    hyps = [SimulationResult(events=[e for _, e in fs]).text() for t, fs in zip(tracks, finals) if t.texts]
    result = {
        "shape": shape,
        "n": n,
        "mode": mode,
        "seconds": seconds,
        "policy": policy,
        "pinned_level": level,
        "finals": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "max": max(values, default=None),
        "first_third_p50": percentile(first, 50),
        "last_third_p50": percentile(last, 50),
        "first_third_p90": percentile(first, 90),
        "last_third_p90": percentile(last, 90),
        "max_lag_p90": percentile([s["max_lag"] for s in timeline], 90),
        "max_level": max((s["level"] for s in timeline), default=0),
        "busy_mean": round(float(np.mean([s["busy"] for s in timeline])), 3) if timeline else None,
        "wer": round(wer(refs, hyps), 2) if refs else None,
        "model_calls": engine.runner.calls - calls0,
        "decodes": sum(h.stream.decodes for h in handles if h.stream is not None),
        "drained": all_drained,
        "drain_seconds": round(drain_seconds, 2),
        "rss_idle_mb": round(rss_idle, 1),
        "rss_end_mb": round(rss_end, 1),
        "timeline": timeline,
    }
    for key, value in result.items():
        if isinstance(value, float):
            result[key] = round(value, 3)
    result["per_track"] = [{"wer": round(wer([r], [h]), 2), "reference": r, "captions": h} for r, h in zip(refs, hyps)]
    result["windows_per_call"] = round(result["decodes"] / max(1, result["model_calls"]), 2)
    growth = (result["last_third_p50"] or 0) - (result["first_third_p50"] or 0)
    result["passed"] = bool(
        values
        and result["p90"] <= P90_BOUND
        and growth <= GROWTH_BOUND
        and all_drained
        and drain_seconds <= DRAIN_BOUND
    )
    return result


def child(shape: str, n: int, mode: str, seconds: float, policy: str, level: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--one", shape, str(n), mode, "--seconds", str(seconds), "--policy", policy]
    if level is not None:
        cmd += ["--level", str(level)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds * 4 + 300)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-3000:])
        raise SystemExit(f"run {shape} {n} {mode} failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def rss_slope(runs: list[dict]) -> float | None:
    """MB of RSS per extra stream: the slope over N of each run's growth from its idle RSS
    (taken after the model and the run's own audio are loaded) to its end."""
    if len(runs) < 2:
        return None
    ns = np.array([r["n"] for r in runs], float)
    growth = np.array([r["rss_end_mb"] - r["rss_idle_mb"] for r in runs], float)
    return round(float(np.polyfit(ns, growth, 1)[0]), 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=90.0)
    ap.add_argument("--continuous", default="1,2,4,6,8,10")
    ap.add_argument("--meeting", default="8,16,32,48,64")
    ap.add_argument("--modes", default="batched,unbatched")
    ap.add_argument("--policy", default="localagreement")
    ap.add_argument("--one", nargs=3, metavar=("SHAPE", "N", "MODE"))
    ap.add_argument("--level", type=int, help="with --one: pin the slow-down level")
    ap.add_argument(
        "--price-levels",
        type=int,
        default=2,
        metavar="N",
        help="also run N continuous speakers at each pinned level (0: skip)",
    )
    args = ap.parse_args()
    if args.one:
        shape, n, mode = args.one
        print(json.dumps(run_one(shape, int(n), mode, args.seconds, args.policy, args.level)))
        return

    summary: dict = {
        "machine": machine(),
        "model": "base int8",
        "seconds": args.seconds,
        "policy": args.policy,
        "runs": [],
        "largest_passing": {},
        "rss_per_stream_mb": {},
    }
    for shape in ("continuous", "meeting"):
        for mode in args.modes.split(","):
            runs, failures = [], 0
            for n in [int(x) for x in getattr(args, shape).split(",") if x]:
                r = child(shape, n, mode, args.seconds, args.policy)
                runs.append(r)
                print(
                    f"{shape:10} {mode:9} N={n:2}: p50 {r['p50']} p90 {r['p90']} (thirds {r['first_third_p50']}"
                    f" -> {r['last_third_p50']}) lag p90 {r['max_lag_p90']} level {r['max_level']}"
                    f" WER {r['wer']} windows/call {r['windows_per_call']} drain {r['drain_seconds']}"
                    f" RSS {r['rss_end_mb']} {'PASS' if r['passed'] else 'fail'}",
                    flush=True,
                )
                failures += not r["passed"]
                if failures >= 2:
                    break
            summary["runs"] += runs
            passing = [r["n"] for r in runs if r["passed"]]
            summary["largest_passing"][f"{shape}/{mode}"] = max(passing, default=0)
            summary["rss_per_stream_mb"][f"{shape}/{mode}"] = rss_slope(runs)
    if args.price_levels:  # what each slow-down level costs in accuracy and latency
        from roomscribe.session.governor import LEVELS

        summary["levels"] = []
        for level in range(len(LEVELS)):
            r = child("continuous", args.price_levels, "batched", args.seconds, args.policy, level)
            summary["levels"].append({k: r[k] for k in ("pinned_level", "n", "p50", "p90", "wer")})
            print(
                f"pinned level {level}, {args.price_levels} continuous: p50 {r['p50']} p90 {r['p90']} WER {r['wer']}",
                flush=True,
            )
    path = save(f"concurrency-{args.policy}", summary)
    print(json.dumps({k: summary[k] for k in ("largest_passing", "rss_per_stream_mb")}, indent=2))
    print(f"saved {path}")


if __name__ == "__main__":
    main()
