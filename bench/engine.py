"""Streaming engine benchmark over ../shared/eval.

    python bench/engine.py [--policies localagreement alignatt] [--parts wer latency nonspeech memory]
                           [--model base] [--clock realtime|aware]

wer        streaming WER per policy vs offline WER with the same model (asr/ + long-form, and
           the long-form file alone); streaming text is what captions end up showing (revised
           finals replace the first ones)
repeats    the same on speech with repeated structure built from asr/ clips (anaphora, sentences
           said twice, phrases said again: tests/support/repeated_speech.py)
vocabulary names with and without a prompt listing them (clips that say them), and listed
           words invented where they were not said (every other clip and nonspeech/)
latency    final-caption latency per reference sentence on the long-form file at 1x
           (emitted_at - sentence end), p50/p90, first third vs last third, time to first interim, RTF
nonspeech  words emitted on nonspeech/ (streaming, each policy, and offline)
memory     peak RSS and RSS growth over the long-form file played three times in one stream
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import common

from roomscribe.engine import Engine, EngineConfig, EventType, StreamConfig
from roomscribe.engine.simulation import simulate
from roomscribe.stats import percentile

LONGFORM = "longform/en_longform_lj003_5min.flac"
REVISE_FINALS = True  # --revise-finals off: first hearings only, to measure what revisions cost


def stream_config(**options) -> StreamConfig:
    return StreamConfig(revise_finals=REVISE_FINALS, **options)


def streaming_text(result) -> str:
    return result.text()


def part_wer(engine, policies, clock) -> dict:
    entries = [e for e in common.manifest() if e["task"] in ("asr", "longform") and e.get("reference_text")]
    longform = [i for i, e in enumerate(entries) if e["audio"] == LONGFORM]
    refs = [e["reference_text"] for e in entries]
    out: dict = {"files": len(entries), "audio_seconds": round(sum(e["duration"] for e in entries), 1)}
    t = time.perf_counter()
    offline = [engine.transcribe(common.load(e)).text for e in entries]
    out["offline"] = {
        "wer": round(common.wer(refs, offline), 2),
        "longform_wer": round(common.wer([refs[i] for i in longform], [offline[i] for i in longform]), 2),
        "seconds": round(time.perf_counter() - t, 1),
    }
    print(f"offline WER {out['offline']}", flush=True)
    for policy in policies:
        hyps, first, compute, revised, hearings = [], [], 0.0, 0, 0
        for e in entries:
            res = simulate(engine, common.load(e), stream_config(policy=policy), mode=clock)
            hyps.append(streaming_text(res))
            first.append(" ".join(f.text for f in res.finals()))
            compute += res.compute_seconds
            revised += len(res.revisions())
            hearings += res.second_hearings
        w = common.wer(refs, hyps)
        lw = common.wer([refs[i] for i in longform], [hyps[i] for i in longform])
        out[policy] = {
            "wer": round(w, 2),
            "delta_vs_offline": round(w - out["offline"]["wer"], 2),
            "longform_wer": round(lw, 2),
            "longform_delta_vs_offline": round(lw - out["offline"]["longform_wer"], 2),
            "first_finals_wer": round(common.wer(refs, first), 2),
            "second_hearings": hearings,
            "revised_segments": revised,
            "rtf": round(compute / out["audio_seconds"], 3),
        }
        print(f"{policy}: {out[policy]}", flush=True)
    return out


def part_repeats(engine, policies, clock) -> dict:
    sys.path.insert(0, str(common.ROOT / "tests"))
    from support.repeated_speech import build

    manifest = {e["audio"]: e for e in common.manifest()}
    speech = build(engine, common.EVAL, manifest)
    offline = engine.transcribe(speech.audio, language="en").text
    out: dict = {
        "audio_seconds": round(len(speech.audio) / 16000, 1),
        "offline": {"wer": round(common.wer([speech.reference], [offline]), 2)},
    }
    print(f"repeats: offline WER {out['offline']['wer']:.2f}%", flush=True)
    for policy in policies:
        res = simulate(engine, speech.audio, stream_config(policy=policy, language="en"), mode=clock)
        w = common.wer([speech.reference], [streaming_text(res)])
        out[policy] = {
            "wer": round(w, 2),
            "delta_vs_offline": round(w - out["offline"]["wer"], 2),
            "first_finals_wer": round(common.wer([speech.reference], [" ".join(f.text for f in res.finals())]), 2),
            "rtf": round(res.rtf, 3),
        }
        print(f"repeats {policy}: {out[policy]}", flush=True)
    return out


VOCABULARY = ["Jenson", "Subiaco", "Gunther Zeiner", "Schussler", "Chiswick", "Caslon", "Longman", "Neild", "Bradshaw"]


def _listed_words(text: str) -> list[str]:
    """The listed words a text contains (by word, case and punctuation folded)."""
    said = common.normalize(text).split()
    listed = {w for name in VOCABULARY for w in common.normalize(name).split()}
    return [w for w in said if w in listed]


def part_vocabulary(engine, policies, clock) -> dict:
    entries = [e for e in common.manifest() if e["task"] in ("asr", "nonspeech")]
    naming = [e for e in entries if e.get("reference_text") and _listed_words(e["reference_text"])]
    others = [e for e in entries if e not in naming]
    prompt = ", ".join(VOCABULARY)
    out: dict = {"prompt": prompt, "naming_files": len(naming), "other_files": len(others)}
    for policy in policies:
        row: dict = {}
        for label, config in (
            ("without", stream_config(policy=policy)),
            ("with", stream_config(policy=policy, prompt=prompt)),
        ):
            hyps = [streaming_text(simulate(engine, common.load(e), config, mode=clock)) for e in naming]
            refs = [e["reference_text"] for e in naming]
            want = sum(len(_listed_words(r)) for r in refs)
            got = sum(len(set(_listed_words(h)) & set(_listed_words(r))) for r, h in zip(refs, hyps))
            row[label] = {"wer": round(common.wer(refs, hyps), 2), "names_heard": got, "names_said": want}
        invented = []
        for e in others:
            text = streaming_text(
                simulate(engine, common.load(e), stream_config(policy=policy, prompt=prompt), mode=clock)
            )
            said = set(_listed_words(e.get("reference_text") or ""))
            invented += [f"{w} ({e['audio']}: {text!r})" for w in _listed_words(text) if w not in said]
        row["invented_with_prompt"] = invented
        out[policy] = row
        print(f"vocabulary {policy}: {row}", flush=True)
    return out


def sentence_latencies(result, turns) -> list[tuple[float, float]]:
    """(sentence end, latency) for each reference sentence that got final words."""
    words = [(w, e.emitted_at) for e in result.finals() for w in e.words]
    out = []
    for i, turn in enumerate(turns):
        nxt = turns[i + 1]["start"] if i + 1 < len(turns) else math.inf
        lo, hi = turn["start"], min(turn["end"] + 0.5, nxt)
        times = [at for w, at in words if lo <= (w.start + w.end) / 2 < hi]
        if times:
            out.append((turn["end"], max(times) - turn["end"]))
    return out


def part_latency(engine, policies, clock) -> dict:
    entry = next(e for e in common.manifest() if e["audio"] == LONGFORM)
    audio = common.load(entry)
    turns = json.loads((common.EVAL / entry["turns"]).read_text())
    out: dict = {"file": LONGFORM, "clock": clock, "audio_seconds": round(len(audio) / 16000, 1)}
    for policy in policies:
        res = simulate(engine, audio, stream_config(policy=policy), mode=clock)
        lats = sentence_latencies(res, turns)
        values = [lat for _, lat in lats]
        third = len(audio) / 16000 / 3
        first = [lat for end, lat in lats if end < third]
        last = [lat for end, lat in lats if end >= 2 * third]
        word_lat = res.final_word_latencies()
        speech_start = turns[0]["start"]
        shown = [e for e in res.events if e.type in (EventType.INTERIM, EventType.FINAL) and e.text]
        stable = _interim_stability(res)
        out[policy] = {
            "sentences": len(values),
            "of": len(turns),
            "p50": round(percentile(values, 50), 2),
            "p90": round(percentile(values, 90), 2),
            "max": round(max(values), 2),
            "first_third_p50": round(percentile(first, 50), 2),
            "last_third_p50": round(percentile(last, 50), 2),
            "word_p50": round(percentile(word_lat, 50), 2),
            "word_p90": round(percentile(word_lat, 90), 2),
            "first_interim": round(shown[0].emitted_at - speech_start, 2) if shown else None,
            "rtf": round(res.rtf, 3),
            "decodes": res.decodes,
            "wer": round(common.wer([entry["reference_text"]], [streaming_text(res)]), 2),
            "interim_rewrites_per_word": stable,
            "second_hearings": res.second_hearings,
            "revised_segments": len(res.revisions()),
            "revision_after_final_p50": _revision_delay(res),
        }
        print(f"{policy}: {out[policy]}", flush=True)
    return out


def _revision_delay(result) -> float | None:
    """Seconds from a segment's closing final to its revision (median), on the stream clock."""
    closed = {e.segment_id: e.emitted_at for e in result.finals() if e.segment_final}
    delays = [e.emitted_at - closed[e.segment_id] for e in result.revisions() if e.segment_id in closed]
    return round(percentile(delays, 50), 2) if delays else None


def _interim_stability(result) -> float:
    """How often a shown interim word was later changed before it became final, per final word."""
    changes, last = 0, []
    for e in result.events:
        if e.type is EventType.INTERIM:
            words = [w.text.strip().lower() for w in e.words]
            common_prefix = 0
            for a, b in zip(last, words):
                if a != b:
                    break
                common_prefix += 1
            changes += len(last) - common_prefix if len(words) >= common_prefix else 0
            last = words
        elif e.type is EventType.FINAL:
            last = last[len(e.words) :]
    finals = sum(len(e.words) for e in result.finals())
    return round(changes / max(finals, 1), 3)


def part_nonspeech(engine, policies, clock) -> dict:
    entries = [e for e in common.manifest() if e["task"] == "nonspeech"]
    out: dict = {"files": len(entries), "audio_seconds": round(sum(e["duration"] for e in entries), 1)}
    for policy in policies:
        per_file = {}
        for e in entries:
            res = simulate(engine, common.load(e), stream_config(policy=policy), mode=clock)
            text = streaming_text(res)
            per_file[e["audio"]] = {"words": len(text.split()), "text": text}
        out[policy] = {"words": sum(v["words"] for v in per_file.values()), "per_file": per_file}
        print(f"{policy}: {out[policy]['words']} words on nonspeech", flush=True)
    offline = {e["audio"]: engine.transcribe(common.load(e)).text for e in entries}
    out["offline"] = {
        "words": sum(len(t.split()) for t in offline.values()),
        "per_file": {k: v for k, v in offline.items() if v},
    }
    print(f"offline: {out['offline']['words']} words on nonspeech", flush=True)
    return out


def part_memory(engine, policies, clock) -> dict:
    audio = common.load(LONGFORM)
    out: dict = {}
    for policy in policies[:1]:
        stream = engine.open_stream(stream_config(policy=policy))
        rss = [common.rss_mb()]
        chunk = 320
        peak = rss[0]
        for _ in range(3):
            for i in range(0, len(audio), chunk):
                stream.push(audio[i : i + chunk])
                while stream.ready():
                    engine.step([stream])
                if i % (chunk * 500) == 0:
                    peak = max(peak, common.rss_mb())
            rss.append(common.rss_mb())
            peak = max(peak, rss[-1])
        out[policy] = {
            "rss_mb_after_load_and_each_pass": [round(x, 1) for x in rss],
            "peak_rss_mb": round(peak, 1),
            "growth_pass1_to_pass3_pct": round(100 * (rss[3] - rss[1]) / rss[1], 2),
        }
        print(f"memory ({policy}): {out[policy]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--policies", nargs="+", default=["localagreement", "alignatt"])
    ap.add_argument("--parts", nargs="+", default=["wer", "repeats", "vocabulary", "latency", "nonspeech", "memory"])
    ap.add_argument("--model", default="base")
    ap.add_argument(
        "--clock",
        default="realtime",
        choices=["realtime", "aware"],
        help="clock for the latency part (others use 'aware': 1x with compute counted)",
    )
    ap.add_argument("--name", default=None, help="result file name (bench/results/NAME.json)")
    ap.add_argument("--revise-finals", default="on", choices=["on", "off"], help="second hearings of closed sentences")
    args = ap.parse_args()
    global REVISE_FINALS
    REVISE_FINALS = args.revise_finals == "on"
    engine = Engine(EngineConfig(model=args.model))
    report = {
        "machine": common.machine(),
        "model": args.model,
        "compute_type": "int8",
        "policies": args.policies,
        "revise_finals": REVISE_FINALS,
    }
    parts = {
        "wer": part_wer,
        "repeats": part_repeats,
        "vocabulary": part_vocabulary,
        "latency": part_latency,
        "nonspeech": part_nonspeech,
        "memory": part_memory,
    }
    for name in args.parts:
        clock = args.clock if name == "latency" else "aware"
        report[name] = parts[name](engine, args.policies, clock)
    path = common.save(args.name or f"engine-{args.model}", report)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
