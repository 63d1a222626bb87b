"""What each way of cutting a model call's cost does to its time and its accuracy.

Every read-speech clip of ../shared/eval/asr (45 clips, 2 to 10 s: each fits one window)
is decoded as one streaming window (encode, generate, align) under each variant; the
table gives the mean time per call, batch 1, and the WER of the windows' text.

- baseline: encoder input = the window + 1 s of silence, rounded up to 2 s; one encoder
  output reused for language, generation and alignment; int8 weights
- 1 s steps: encoder input rounded up to 1 s (less silence, fewer windows share a batch)
- 30 s input: every window padded to Whisper's full 30 s
- no pad: the window rounded up to 2 s with no extra second of silence
- separate align encode: the alignment pass encodes the window again instead of reusing
- float32: full-precision weights instead of int8

    python bench/call_cost.py [--clips N]
"""

from __future__ import annotations

import argparse
import time

from common import load, machine, manifest, save, wer

from roomscribe.engine import Engine, EngineConfig  # noqa: E402
from roomscribe.engine.whisper import DecodeOptions, DecodeRequest, WhisperRunner  # noqa: E402


def run_variant(runner: WhisperRunner, clips, reencode_for_align: bool = False) -> dict:
    if reencode_for_align:
        original = runner._align

        def align_with_own_encode(requests, languages, encoded, token_lists, content_frames):
            import ctranslate2
            import numpy as np

            frames = runner._frames_for(max(len(r.audio) for r in requests))
            batch = np.stack([runner._features(r.audio, frames) for r in requests])
            encoded = runner.model.encode(ctranslate2.StorageView.from_array(batch), to_cpu=True)
            return original(requests, languages, encoded, token_lists, content_frames)

        runner._align = align_with_own_encode
    try:
        runner.decode([DecodeRequest(audio=clips[0][0], language="en")])  # warm-up
        times, texts = [], []
        for audio, _ in clips:
            started = time.perf_counter()
            (result,) = runner.decode([DecodeRequest(audio=audio, language="en")])
            times.append(time.perf_counter() - started)
            texts.append(runner.decode_tokens(result.tokens))
    finally:
        if reencode_for_align:
            del runner._align
    return {
        "ms_per_call": round(1000 * sum(times) / len(times), 1),
        "wer": round(wer([ref for _, ref in clips], texts), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=0, help="use only the first N clips")
    args = ap.parse_args()
    entries = sorted(
        (e for e in manifest() if e["task"] == "asr" and e.get("reference_text")), key=lambda e: e["audio"]
    )
    clips = [(load(e), e["reference_text"]) for e in entries][: args.clips or None]

    engine = Engine(EngineConfig(model="base"))
    base = engine.runner

    def runner_with(**options) -> WhisperRunner:
        return WhisperRunner(base.fw_model, DecodeOptions(**options), name=base.name)

    variants = {
        "baseline": lambda: run_variant(base, clips),
        "1 s steps": lambda: run_variant(runner_with(frame_step_seconds=1.0), clips),
        "30 s input": lambda: run_variant(runner_with(frame_step_seconds=30.0), clips),
        "no pad": lambda: run_variant(runner_with(pad_seconds=0.0), clips),
        "separate align encode": lambda: run_variant(base, clips, reencode_for_align=True),
    }
    results = {}
    for name, fn in variants.items():
        results[name] = fn()
        print(f"{name:22} {results[name]['ms_per_call']:7.1f} ms/call  WER {results[name]['wer']:.2f} %", flush=True)
    del engine
    float32 = Engine(EngineConfig(model="base", compute_type="float32"))
    results["float32"] = run_variant(float32.runner, clips)
    print(f"{'float32':22} {results['float32']['ms_per_call']:7.1f} ms/call  WER {results['float32']['wer']:.2f} %")
    path = save("call-cost", {"machine": machine(), "model": "base", "clips": len(clips), "variants": results})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
