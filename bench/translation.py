"""Translated captions: quality per language pair, and how long translations trail captions.

    python bench/translation.py [--parts quality latency] [--seconds 150]

quality  chrF (sacrebleu) against hand-made references (bench/data/translation_references.json):
         English speech from ../shared/eval into Spanish, French and Korean end to end (Whisper
         base offline, then the translation of what it heard), the same from the reference
         transcripts (the translation alone), and Korean meeting sentences into English as
         text. Each with three prompts: `bare` (the instruction alone), `examples` (worked
         examples for the pair) and `context` (examples and the speaker's previous two sentences
         with their translations: what the live stage sends). Seconds per sentence too.
latency  the emulated LiveKit room of bench/room.py (the real worker, translation into Korean)
         with 1 and 4 speakers of meetings/mixed/mtg_en_7spk: from a caption's first final
         reaching the room to its translation reaching the room, p50/p90; and the captions' own
         latency with and without translation.

Uses the translator of `roomscribe[translate]` (the packaged GGUF) unless ROOMSCRIBE_TRANSLATOR_MODEL
names another GGUF.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import common

REFERENCES = common.ROOT / "bench" / "data" / "translation_references.json"
STYLES = ("bare", "examples", "context")


def style_of(name: str):
    from roomscribe.translation.prompts import PromptStyle

    return {
        "bare": PromptStyle(examples=False, context=0, glossary=False),
        "examples": PromptStyle(examples=True, context=0),
        "context": PromptStyle(examples=True, context=2),
    }[name]


def chrf(hyps: list[str], refs: list[str]) -> float:
    from sacrebleu.metrics import CHRF

    return round(CHRF().corpus_score(hyps, [refs]).score, 1)


def translate_all(translator, sources: list[str], source: str, target: str, style: str) -> tuple[list[str], float]:
    """Each sentence in order; with the `context` style, the previous ones go with it."""
    from roomscribe.translation.prompts import TranslationRequest

    translator.style = style_of(style)
    out: list[str] = []
    t0 = time.perf_counter()
    for i, text in enumerate(sources):
        context = tuple(zip(sources[max(0, i - 2) : i], out[max(0, i - 2) : i], strict=True))
        out.append(translator.translate_blocking(TranslationRequest(text, source, target, context)))
    return out, (time.perf_counter() - t0) / max(1, len(sources))


def part_quality(translator, engine) -> dict:
    refs = json.loads(REFERENCES.read_text())
    report: dict = {"sentences": {"en": len(refs["en"]), "ko": len(refs["ko"])}}
    manifest = {e["audio"]: e for e in common.manifest()}
    spoken = [manifest[r["audio"]]["reference_text"] for r in refs["en"]]
    heard = [engine.transcribe(common.load(r["audio"]), language="en").text.strip() for r in refs["en"]]
    report["asr_wer"] = round(common.wer(spoken, heard), 2)
    print(f"ASR WER on these clips: {report['asr_wer']}%", flush=True)
    samples: dict = {}
    for target in ("es", "fr", "ko"):
        row: dict = {}
        for style in STYLES:
            end_to_end, seconds = translate_all(translator, heard, "en", target, style)
            wanted = [r[target] for r in refs["en"]]
            row[style] = {"chrf": chrf(end_to_end, wanted), "seconds_per_sentence": round(seconds, 2)}
            if style == "context":  # what the translation alone costs, without ASR's errors
                from_text, _ = translate_all(translator, spoken, "en", target, style)
                row[style]["chrf_from_reference_text"] = chrf(from_text, wanted)
            samples[f"en-{target}-{style}"] = end_to_end[:3]
            print(f"en->{target} {style}: {row[style]}", flush=True)
        report[f"en-{target}"] = row
    row = {}
    korean = [r["ko"] for r in refs["ko"]]
    for style in STYLES:
        english, seconds = translate_all(translator, korean, "ko", "en", style)
        row[style] = {"chrf": chrf(english, [r["en"] for r in refs["ko"]]), "seconds_per_sentence": round(seconds, 2)}
        samples[f"ko-en-{style}"] = english[:3]
        print(f"ko->en {style}: {row[style]}", flush=True)
    report["ko-en"] = row
    report["samples"] = samples
    return report


def part_latency(seconds: float, variants: tuple[str, ...]) -> dict:
    import room

    previous = common.RESULTS / "translation.json"
    out: dict = json.loads(previous.read_text()).get("latency", {}) if previous.is_file() else {}
    for speakers in (1, 4):
        for translate in [t for t, v in (((), "plain"), (("ko",), "translated")) if v in variants]:
            label = f"{speakers}_speakers" + ("_translated" if translate else "")
            result = asyncio.run(room.run("localagreement", seconds, speakers, translate))
            out[label] = {
                "caption_latency_p50": result["latency_p50"],
                "caption_latency_p90": result["latency_p90"],
                "wer": result["wer"],
                "bot_cpu_cores": result["bot_cpu_cores"],
                "translation": result.get("translation"),
            }
            print(label, json.dumps(out[label]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["quality", "latency"], choices=["quality", "latency"])
    ap.add_argument("--seconds", type=float, default=150.0, help="latency: play the first N seconds of the mix")
    ap.add_argument("--variants", nargs="+", default=["plain", "translated"], choices=["plain", "translated"])
    args = ap.parse_args()
    previous = common.RESULTS / "translation.json"
    report: dict = json.loads(previous.read_text()) if previous.is_file() else {}  # parts not rerun are kept
    report["machine"] = common.machine()
    if "quality" in args.parts:
        from roomscribe.engine import Engine, EngineConfig
        from roomscribe.translation.llama import LlamaTranslator

        translator = LlamaTranslator(os.environ.get("ROOMSCRIBE_TRANSLATOR_MODEL"))
        translator.load()
        report["translator"] = {"model": translator.model, "threads": translator.threads}
        report["quality"] = part_quality(translator, Engine(EngineConfig(model="base")))
        translator.close()
    if "latency" in args.parts:
        report["latency"] = part_latency(args.seconds, tuple(args.variants))
    path = common.save("translation", report)
    print(f"saved {path}")


if __name__ == "__main__":
    main()
