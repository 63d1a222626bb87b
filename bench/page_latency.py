"""Latency from the browser's microphone to the caption on the page, in real headless Chromium.

`roomscribe serve` runs in its own process; headless Chromium (Debian's chromium +
chromium-driver, driven by selenium) opens the caption page with `?autostart=1`, and its
fake microphone plays the 5.4-minute long-form recording (longform/en_longform_lj003_5min)
once at 1x. Audio goes to the server over WebRTC, captions come back on the data channel;
the page logs every message with its arrival time (`window.roomscribe.log`, Date.now()).

Clocks:
- the file's clock: Chromium's fake microphone starts playing the file when getUserMedia
  opens it, so file time = (arrival - window.roomscribe.captureStartedAt) / 1000 (assumed; the
  page sets captureStartedAt as getUserMedia resolves, a few ms after the device starts);
- the session clock: caption `start`/`end` and the transcript's word times are seconds since
  the server created the session (at the POST /whip), on the audio the server received; the
  audio before the WebRTC connection was up never reached it. So file time = session time +
  an offset of about the connection time. The offset is estimated by aligning the captions'
  last word of each sentence with the sentence ends of `.turns.json` (median), and
  cross-checked against the connection time (arrival of the data channel's `welcome`).

Measured:
- sentence latency (file clock only, no offset): for each sentence of `.turns.json`, from its
  end in the file to the arrival of the caption message that first held its last word as
  committed (final) text (sentences whose last 3 words were never matched are left out); a
  revised final (a second hearing) that respells a committed word does not move its time;
- word latency: for every committed word, arrival of the caption that first committed it minus
  the word's end (its transcript word time on the session clock + the offset);
- message latency (the plain measure): for each caption message that committed new words,
  arrival - msg.end - offset (msg.end is the end of the line so far, interim tail included,
  so this reads low when an interim ran ahead of the commit), and the server's own `lag`;
- time to first caption: first interim's arrival minus the start of the first sentence;
- WER of the page's final lines against the turns' text (Whisper's EnglishTextNormalizer).

Needs root (WebRTC skips loopback, so it runs in a private network namespace) and the
chromium/chromium-driver packages. Run it on a quiet machine:

    python bench/page_latency.py                # the whole 5.4 minutes (about 6.5 min)
    python bench/page_latency.py --seconds 40   # a smoke run
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import EVAL, ROOT, ChildProcess, load, machine, normalize, save, wer

sys.path.insert(0, str(ROOT / "tests"))
from emulator import netns
from roomscribe.stats import percentile
from support import browser

AUDIO = "longform/en_longform_lj003_5min.flac"
TURNS = EVAL / "longform/en_longform_lj003_5min.turns.json"
SESSION = "bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(ChildProcess):
    """`roomscribe serve` in its own process (it inherits this process's network namespace)."""

    def __init__(self, port: int, model: str, compute_type: str, policy: str, log: Path):
        self.url = f"http://127.0.0.1:{port}"
        super().__init__(
            ["serve", "--port", str(port), "--model", model, "--compute-type", compute_type, "--policy", policy], log
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"roomscribe serve exited ({self.proc.returncode}); see {self.log.name}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        sys.exit(f"roomscribe serve did not come up in {timeout:.0f} s; see {self.log.name}")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read().decode()


def committed_words(log: list[dict], t0_ms: float) -> list[dict]:
    """Every committed word as it first arrived: segment, index in the segment, text, arrival
    on the file clock, and the message (in the order of the segments' starts). A final that
    comes after its segment's final is a revision (a second hearing): the words it respells
    keep the arrival of the first final, which is when the reader first saw them committed,
    and only the words it adds arrive with it."""
    segments: dict[str, dict] = {}
    for entry in log:
        msg = entry["msg"]
        if msg.get("type") != "caption":
            continue
        seg = segments.setdefault(msg["segment_id"], {"start": msg["start"], "words": [], "final": False})
        words = msg["text"].split()
        have = seg["words"]
        at = (entry["at"] - t0_ms) / 1000.0
        if seg["final"]:  # a revised final
            for i, w in enumerate(words[: len(have)]):
                have[i] = dict(have[i], text=w, msg=msg)
            del have[len(words) :]
            keep = len(have)
        else:
            keep = 0  # committed text only grows; if it ever changed, the changed words arrive anew
            while keep < min(len(have), len(words)) and have[keep]["text"] == words[keep]:
                keep += 1
            del have[keep:]
        seg["final"] = seg["final"] or bool(msg.get("final"))
        have += [
            {"segment_id": msg["segment_id"], "index": i, "text": w, "arrival": at, "msg": msg}
            for i, w in enumerate(words[keep:], start=keep)
        ]
    out = []
    for seg in sorted(segments.values(), key=lambda s: s["start"]):
        out += seg["words"]
    return out


def tokens(words: list[str]) -> tuple[list[str], list[int]]:
    """Normalised tokens and, for each, the index of the word it came from."""
    out, owner = [], []
    for i, word in enumerate(words):
        for tok in normalize(word).split():
            out.append(tok)
            owner.append(i)
    return out, owner


def sentence_latencies(turns: list[dict], words: list[dict]) -> tuple[list[dict], dict[int, int]]:
    """Per sentence: its end in the file, the arrival of the caption that committed its last
    word; and the alignment (reference token -> hypothesis word index)."""
    ref, ref_turn = [], []
    for i, turn in enumerate(turns):
        toks = normalize(turn["text"]).split()
        ref += toks
        ref_turn += [i] * len(toks)
    hyp, hyp_word = tokens([w["text"] for w in words])
    matcher = difflib.SequenceMatcher(None, ref, hyp, autojunk=False)
    aligned: dict[int, int] = {}
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            aligned[block.a + k] = hyp_word[block.b + k]
    rows = []
    for i, turn in enumerate(turns):
        mine = [k for k, t in enumerate(ref_turn) if t == i]
        last = next((k for k in reversed(mine[-3:]) if k in aligned), None)
        row = {"sentence": i, "end": turn["end"], "text": turn["text"]}
        if last is not None:
            word = words[aligned[last]]
            row.update(
                word=word["text"],
                exact_last=last == mine[-1],
                arrival=word["arrival"],
                latency=word["arrival"] - turn["end"],
                segment_id=word["segment_id"],
                index=word["index"],
            )
        rows.append(row)
    return rows, aligned


def word_ends(segments: list[dict]) -> dict[tuple[str, int], float]:
    """(segment id, word index) -> the word's end on the session clock, from the transcript,
    for segments whose words line up one-to-one with their text's words."""
    out = {}
    for seg in segments:
        words = [w for w in seg.get("words", []) if w["word"]]
        if len(words) == len(seg["text"].split()):
            out.update({(seg["segment_id"], i): w["end"] for i, w in enumerate(words)})
    return out


def stats(values: list[float]) -> dict:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "mean": float(np.mean(values)) if values else float("nan"),
        "max": max(values) if values else float("nan"),
    }


def run(args) -> dict:
    reason = browser.unavailable()
    if reason:
        sys.exit(f"cannot run: {reason}")
    if netns.enter_private_network() is None:
        sys.exit(f"cannot run: no private network namespace for WebRTC: {netns.reason}")
    import psutil

    all_turns = json.loads(TURNS.read_text())
    audio = load(AUDIO)
    full = len(audio) / 16000
    if args.seconds and args.seconds < full:
        # Cut at the end of the last sentence that fits, so the reference is exact.
        turns = [t for t in all_turns if t["end"] <= args.seconds]
        if not turns:
            sys.exit(f"--seconds {args.seconds}: no whole sentence fits (the first ends at {all_turns[0]['end']} s)")
        audio = audio[: int(min(full, turns[-1]["end"] + 0.3) * 16000)]
    else:
        turns = all_turns
    seconds = len(audio) / 16000
    tmp = Path(tempfile.mkdtemp(prefix="roomscribe-page-latency-"))
    mic = browser.write_fake_mic(audio, tmp / "mic.wav")
    load_before = os.getloadavg()
    server = Server(free_port(), args.model, args.compute_type, args.policy, ROOT / "bench" / "page-latency-server.log")
    try:
        server.wait_ready()
        print(f"server up ({server.url}); playing {seconds:.1f} s of {AUDIO} into headless Chromium", flush=True)
        with browser.chromium(mic, timeout=120, log_path=tmp / "chromedriver.log") as driver:
            chrome = psutil.Process(driver.service.process.pid)
            cpu0, wall0 = server.cpu_seconds(), time.monotonic()
            driver.get(f"{server.url}/?autostart=1&session={SESSION}&name=LJ&language=en&policy={args.policy}")
            browser.wait_for(lambda: browser.read_page(driver)["captureStartedAt"], 30, message="the microphone")
            page = browser.read_page(driver)
            t0 = page["captureStartedAt"]

            def progress(p: dict) -> None:
                now = time.time() * 1000
                if p["error"]:
                    sys.exit(f"the page shows an error: {p['error']}")
                if now - progress.last >= 15000:
                    progress.last = now
                    tail = browser.page_text(p, final_only=False)[-70:]
                    print(f"  {(now - t0) / 1000:6.1f} s  {p['status']}  {p['lag']}  …{tail}", flush=True)

            progress.last = t0
            left = seconds + 1.0 - (time.time() * 1000 - t0) / 1000
            browser.wait_until_settled(
                driver, at_least=max(0.0, left), quiet=3.0, timeout=max(0.0, left) + 120, progress=progress
            )
            browser.stop_microphone(driver)  # the server captions the last words and sends the finals
            page = browser.wait_until_settled(driver, at_least=1.0, quiet=3.0, timeout=60)
            wall = time.monotonic() - wall0
            server_cpu = (server.cpu_seconds() - cpu0) / wall
            chrome_cpu = sum(sum(p.cpu_times()[:2]) for p in chrome.children(recursive=True))
            log = browser.read_log(driver)
        transcript = json.loads(server.get(f"/sessions/{SESSION}/transcript?format=json"))["segments"]
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return report(args, turns, seconds, t0, page, log, transcript, server_cpu, chrome_cpu, wall, load_before)


def report(args, turns, seconds, t0, page, log, transcript, server_cpu, chrome_cpu, wall, load_before) -> dict:
    captions = [e for e in log if e["msg"]["type"] == "caption"]
    welcome = next((e for e in log if e["msg"]["type"] == "welcome"), None)
    connected = (welcome["at"] - t0) / 1000 if welcome else float("nan")
    words = committed_words(log, t0)
    sentences, _ = sentence_latencies(turns, words)
    measured = [s for s in sentences if "latency" in s]

    # Session clock -> file clock: the sentence ends against the transcript's word ends.
    ends = word_ends(transcript)
    offsets = [
        s["end"] - ends[(s["segment_id"], s["index"])]
        for s in measured
        if s["exact_last"] and (s["segment_id"], s["index"]) in ends
    ]
    offset = float(np.median(offsets)) if offsets else connected

    word_lat = [
        w["arrival"] - (ends[(w["segment_id"], w["index"])] + offset)
        for w in words
        if (w["segment_id"], w["index"]) in ends
    ]
    seen: dict[str, int] = {}
    msg_lat, server_lag = [], []
    for entry in captions:
        msg = entry["msg"]
        n = len(msg["text"].split())
        if n > seen.get(msg["segment_id"], 0):
            seen[msg["segment_id"]] = n
            msg_lat.append((entry["at"] - t0) / 1000 - (msg["end"] + offset))
        server_lag.append(msg["lag"])
    first = next((e for e in captions if e["msg"]["tail"] or e["msg"]["text"]), None)
    first_at = (first["at"] - t0) / 1000 if first else float("nan")

    said = " ".join(t["text"] for t in turns)
    heard = browser.page_text(page)
    result = {
        "machine": {**machine(), "load_before": [round(x, 2) for x in load_before]},
        "model": args.model,
        "compute_type": args.compute_type,
        "policy": args.policy,
        "browser": "headless Chromium (fake microphone from the file), WebRTC to `roomscribe serve`",
        "audio": AUDIO,
        "seconds": round(seconds, 2),
        "sentences": len(turns),
        "clock": (
            "file time = (arrival - captureStartedAt)/1000: Chromium's fake microphone starts the file "
            "when getUserMedia opens it; session time + offset = file time, offset = median over "
            "sentences of (sentence end in .turns.json - transcript end of its last word)"
        ),
        "connected_s": connected,
        "session_to_file_offset_s": offset,
        "offset_spread_s": [percentile(offsets, 10), percentile(offsets, 90)] if offsets else None,
        "sentence_latency_s": stats([s["latency"] for s in measured]),
        "sentences_measured": len(measured),
        "word_latency_s": stats(word_lat),
        "message_latency_s": stats(msg_lat),
        "server_lag_s": stats(server_lag),
        "first_caption_after_speech_s": first_at - turns[0]["start"],
        "first_caption_at_s": first_at,
        "wer_percent": wer([said], [heard]),
        "words_reference": len(normalize(said).split()),
        "words_page": len(normalize(heard).split()),
        "caption_messages": len(captions),
        "lines": len(page["lines"]),
        "server_cpu_cores": server_cpu,
        "chromium_cpu_seconds": chrome_cpu,
        "wall_s": wall,
        "per_sentence": [
            {k: (round(v, 3) if isinstance(v, float) else v) for k, v in s.items() if k not in ("segment_id", "index")}
            for s in sentences
        ],
        "page_text": heard,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--seconds", type=float, default=0, help="play only the first S seconds (cut at a sentence end)"
    )
    parser.add_argument("--model", default="base")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--policy", default="localagreement", choices=["localagreement", "alignatt"])
    parser.add_argument(
        "--out",
        default="page-latency",
        help="result name under bench/results/ (.json added), or a path ending in .json",
    )
    args = parser.parse_args()
    result = run(args)
    if args.out.endswith(".json"):
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        path = save(args.out, result)

    def line(name: str, s: dict) -> str:
        return f"{name:34s} p50 {s['p50']:5.2f}  p90 {s['p90']:5.2f}  max {s['max']:5.2f}  (n={s['n']})"

    m = result["machine"]
    print(
        f"\n{m['cpu']} x{m['cores']}, commit {m['commit']}, load before {m['load_before']}; "
        f"model {args.model} {args.compute_type}, {args.policy}"
    )
    print(
        f"{result['seconds']:.1f} s of {AUDIO}; connected {result['connected_s']:.2f} s after capture; "
        f"session->file offset {result['session_to_file_offset_s']:.2f} s"
    )
    print(
        line("sentence end -> committed (file)", result["sentence_latency_s"]) + f"  of {result['sentences']} sentences"
    )
    print(line("word end -> committed", result["word_latency_s"]))
    print(line("caption msg (arrival - end)", result["message_latency_s"]))
    print(line("server-reported lag", result["server_lag_s"]))
    print(
        f"first caption {result['first_caption_after_speech_s']:.2f} s after speech began; "
        f"WER {result['wer_percent']:.1f}% ({result['words_page']}/{result['words_reference']} words); "
        f"server CPU {result['server_cpu_cores']:.2f} cores, Chromium {result['chromium_cpu_seconds']:.0f} CPU-s"
    )
    print(f"saved {path}")


if __name__ == "__main__":
    main()
