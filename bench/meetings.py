"""Meeting records under load: live sessions and queued uploads at once, on each database.

`roomscribe serve` runs in its own process, with meeting records in SQLite (`--data-dir`),
in PostgreSQL (`--database`, a throwaway server like the tests' own), or not at all
(`--no-records`, the baseline). At once, at 1x real time:

- N live sessions on `WS /stt/realtime`, each streaming its own sequence of LJ Speech clips
  (a different rotation per session) as base64 PCM, each in its own meeting;
- M uploads of short clips POSTed to `/transcribe` together, each with its own meeting id
  (the server's file queue holds 8: a 503 is retried after a pause, and counted).

Measured:
- lost segments: every final a live client received (segment id -> text) must be in
  `GET /meetings/{id}` with the same text, and every upload's segments in its meeting;
- the store's write latency per final (the segment writer's own record, from `/status`);
- caption latency: for each segment's first final, the wall-clock moment it arrived minus
  the moment its audio's end had been sent (the segment's `end` on the session clock, which
  starts at the first chunk), p50/p90 over the sessions; a revised final (a second hearing
  of a segment already captioned, the same segment id again) is counted apart, not timed;
- upload turnaround p50/p90 and the wall time of the whole load.

The baseline runs first and again last (`--repeats` times), so the run-to-run spread of
caption latency under the same load is visible next to the cost of storage. Results go to
`bench/results/meetings.json` (`--quick`: `meetings-quick.json`, leaving the full run's alone).

    python bench/meetings.py [--sessions 8] [--uploads 20] [--seconds 60] [--databases sqlite postgresql]
                             [--repeats 1] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import socket
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
from common import EVAL, ROOT, ChildProcess, load, machine, save

sys.path.insert(0, str(ROOT / "tests"))
from roomscribe.stats import percentile  # noqa: E402

LJ = "asr/en/ljspeech"
CHUNK_SECONDS = 0.25


def clips() -> list[Path]:
    return sorted((EVAL / LJ).glob("*.flac"))


def session_audio(files: list[Path], rotation: int, seconds: float) -> np.ndarray:
    """LJ Speech clips from `rotation` on, with half a second between them, up to `seconds`."""
    parts, total, i = [], 0, rotation
    gap = np.zeros(8000, np.float32)
    while total < seconds * 16000:
        audio = load(files[i % len(files)])
        parts += [audio, gap]
        total += len(audio) + len(gap)
        i += 1
    return np.concatenate(parts)[: int(seconds * 16000)]


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the server did not start")


async def live_session(http: aiohttp.ClientSession, url: str, meeting: str, audio: np.ndarray) -> dict:
    received: dict[str, str] = {}
    latencies: list[float] = []
    revised = 0
    data = pcm16(audio)
    step = int(CHUNK_SECONDS * 32000)
    async with http.ws_connect(url.replace("http", "ws") + "/stt/realtime", max_msg_size=0) as ws:
        await ws.send_json({"type": "start_session", "session_id": meeting, "meeting_id": meeting, "language": "en"})
        started: list[float] = []

        async def listen() -> None:
            nonlocal revised
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                message = json.loads(msg.data)
                if message["type"] == "session_started":
                    continue
                if message["type"] == "transcript":
                    segment = message["segment"]
                    if segment["segment_id"] in received:
                        revised += 1  # a second hearing, late by design: its text is the one kept
                    elif started:
                        # The meeting's clock and the session's agree here (one door per meeting).
                        latencies.append(time.monotonic() - started[0] - segment["end"])
                    received[segment["segment_id"]] = segment["text"]
                elif message["type"] == "session_ended":
                    return

        listener = asyncio.ensure_future(listen())
        began = time.monotonic()
        started.append(began)
        for i in range(0, len(data), step):
            await ws.send_json({"type": "audio_chunk", "audio": base64.b64encode(data[i : i + step]).decode()})
            # Paced by the clock, not by the sleeps: sending never drifts behind real time.
            await asyncio.sleep(max(0.0, began + (i + step) / 32000 - time.monotonic()))
        await ws.send_json({"type": "end_session"})
        await asyncio.wait_for(listener, 120)
    return {"meeting": meeting, "received": received, "latencies": latencies, "revised": revised}


async def upload(http: aiohttp.ClientSession, url: str, meeting: str, path: Path) -> dict:
    retries, began = 0, time.monotonic()
    while True:
        form = aiohttp.FormData()
        form.add_field("file", path.read_bytes(), filename=path.name)
        form.add_field("meeting_id", meeting)
        form.add_field("language", "en")
        async with http.post(url + "/transcribe", data=form) as response:
            if response.status == 503:
                retries += 1
                await asyncio.sleep(1.0)
                continue
            response.raise_for_status()
            body = await response.json()
        return {
            "meeting": meeting,
            "segments": [s["text"].strip() for s in body["segments"] if s["text"].strip()],
            "seconds": time.monotonic() - began,
            "retries": retries,
        }


async def stored(http: aiohttp.ClientSession, url: str, meeting: str) -> dict[str, str] | None:
    async with http.get(f"{url}/meetings/{meeting}") as response:
        if response.status != 200:
            return None
        return {s["segment_id"]: s["text"] for s in (await response.json())["segments"]}


async def load_run(url: str, sessions: int, uploads: int, seconds: float, records: bool) -> dict:
    files = clips()
    audio = [session_audio(files, 17 * n, seconds) for n in range(sessions)]
    upload_files = [files[(5 * n + 3) % len(files)] for n in range(uploads)]
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        began = time.monotonic()
        live = [live_session(http, url, f"live-{n}", audio[n]) for n in range(sessions)]
        files_in = [upload(http, url, f"upload-{n}", upload_files[n]) for n in range(uploads)]
        results = await asyncio.gather(*live, *files_in)
        wall = time.monotonic() - began
        lives, ups = results[:sessions], results[sessions:]
        live_lost = upload_lost = 0
        if records:
            for run in lives:
                kept = await stored(http, url, run["meeting"]) or {}
                live_lost += sum(1 for sid, text in run["received"].items() if kept.get(sid) != text)
            for run in ups:
                kept = await stored(http, url, run["meeting"]) or {}
                # Each text as often as the answer had it (the answer carries no segment ids).
                missing = Counter(run["segments"]) - Counter(t.strip() for t in kept.values() if t.strip())
                upload_lost += sum(missing.values())
        async with http.get(url + "/status") as response:
            status = await response.json()
    latencies = [x for run in lives for x in run["latencies"]]
    turnaround = [run["seconds"] for run in ups]
    writer = (status.get("records") or {}).get("writer") or {}
    live_checked = sum(len(run["received"]) for run in lives)
    upload_checked = sum(len(run["segments"]) for run in ups)
    return {
        "finals_received": live_checked,
        "revised_finals": sum(run["revised"] for run in lives),
        "segments_checked": live_checked + upload_checked if records else 0,
        "segments_lost": live_lost + upload_lost if records else None,
        "live_lost": live_lost if records else None,
        "upload_segments": upload_checked,
        "upload_lost": upload_lost if records else None,
        "caption_latency_p50": round(percentile(latencies, 50), 3),
        "caption_latency_p90": round(percentile(latencies, 90), 3),
        "upload_turnaround_p50": round(percentile(turnaround, 50), 2),
        "upload_turnaround_p90": round(percentile(turnaround, 90), 2),
        "upload_retries": sum(run["retries"] for run in ups),
        "write_ms": writer.get("write_ms"),
        "writer": {k: writer.get(k) for k in ("written", "buffered", "dropped", "healthy")} if writer else None,
        "wall_seconds": round(wall, 1),
    }


def run_config(name: str, store_args: list[str], args, log_dir: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = ChildProcess(["serve", "--port", str(port), *store_args], log_dir / f"{name}.log")
    try:
        wait_healthy(url)
        result = asyncio.run(load_run(url, args.sessions, args.uploads, args.seconds, "--no-records" not in store_args))
    finally:
        server.stop()
    print(f"{name:12s} {json.dumps(result)}", flush=True)
    return {"config": name, **result}


def table(runs: list[dict]) -> str:
    def cell(value, digits=2) -> str:
        return "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    rows = [
        "| records | finals (revised) | checked / lost | write ms p50 / p99 / max | caption latency p50 / p90 s"
        " | upload turnaround p50 / p90 s | upload retries | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        w = r["write_ms"] or {}
        writes = " / ".join(cell(w.get(k)) for k in ("p50", "p99", "max")) if w.get("count") else "-"
        checked = f"{r['segments_checked']} / {r['segments_lost']}" if r["segments_lost"] is not None else "-"
        rows.append(
            f"| {r['config']} | {r['finals_received']} ({r['revised_finals']}) | {checked} | {writes}"
            f" | {cell(r['caption_latency_p50'])} / {cell(r['caption_latency_p90'])}"
            f" | {cell(r['upload_turnaround_p50'], 1)} / {cell(r['upload_turnaround_p90'], 1)}"
            f" | {r['upload_retries']} | {cell(r['wall_seconds'], 1)} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=8)
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=1, help="runs without records again at the end (the spread)")
    parser.add_argument("--quick", action="store_true", help="2 sessions, 3 uploads, 20 s: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.sessions, args.uploads, args.seconds = 2, 3, 20.0
    work = Path(tempfile.mkdtemp(prefix="roomscribe-bench-meetings-"))
    notes = []
    runs = [run_config("none", ["--no-records"], args, work)]
    for database in args.databases:
        if database == "sqlite":
            runs.append(run_config("sqlite", ["--data-dir", str(work / "records")], args, work))
            continue
        from support.postgres import start_server, unavailable_reason

        reason = unavailable_reason()
        if reason:
            notes.append(f"postgresql skipped: {reason}")
            print(notes[-1], flush=True)
            continue
        server = start_server()
        try:
            runs.append(run_config("postgresql", ["--database", server.create_database()], args, work))
        finally:
            server.destroy()
    for n in range(args.repeats):
        runs.append(run_config("none-again" + (f"-{n + 1}" if args.repeats > 1 else ""), ["--no-records"], args, work))
    baseline = [r["caption_latency_p50"] for r in runs if r["config"].startswith("none")]
    path = save(
        "meetings-quick" if args.quick else "meetings",
        {
            "machine": machine(),
            "model": "base",
            "sessions": args.sessions,
            "uploads": args.uploads,
            "seconds": args.seconds,
            "notes": notes,
            "baseline_caption_p50_spread": [min(baseline), max(baseline)] if baseline else None,
            "runs": runs,
        },
    )
    print()
    print(table(runs))
    for note in notes:
        print(f"- {note}")
    if baseline:
        print(f"- caption latency p50 without records, over {len(baseline)} runs: {min(baseline)} to {max(baseline)} s")
    print(f"saved {path} (server logs in {work})")


if __name__ == "__main__":
    main()
