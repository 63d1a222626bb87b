"""Real speech with repeated structure, built from the eval set's clips.

Anaphora ("this is the narrowing ..., this is the tendency ..., this is awkward ..."), a sentence
said twice, a phrase said again straight after itself, a list: what a speaker does and what a
decoder loop looks like in text alone. Clips are joined with gaps shorter than the VAD's end of
speech, so each part is one utterance and its repeats fall inside one decoding window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .speech import LJ, normalize, read_audio

SAMPLE_RATE = 16000

# (clips in order, gap seconds between them); "x2" says the clip twice, "head3:" prefixes the
# clip with its own first three words said once more, "tail2:" ends it with its last two words again.
PARTS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("LJ001-0125", "LJ001-0138", "LJ001-0123"), 0.3),  # "this is the ..., this is the ..., this is ..."
    (("LJ001-0136", "LJ001-0142"), 0.3),  # "modern printers understand ..., modern printers generally ..."
    (("LJ001-0159", "LJ001-0169"), 0.35),  # "The paper that is used ..., The paper used ..."
    (("LJ001-0001", "LJ001-0009"), 0.3),  # "Printing, in the only sense ..., Printing, then, ..."
    (("x2:LJ001-0035",), 0.3),  # a sentence said twice
    (("LJ002-0007", "LJ002-0073"), 0.3),  # "Neild gives ..., Neild takes ..."
    (("head3:LJ001-0107",), 0.25),  # "To say a few ... To say a few words on ..."
    (("x2:LJ002-0012",), 0.3),  # "After that they fell as steadily, after that ..."
    (("LJ001-0045", "LJ002-0033"), 0.35),  # "fourteen sixty-nine, fourteen seventy; two. ... three. ..."
    (("tail2:LJ001-0174",), 0.2),  # "... of the whole scheme of the book. the book."
    (("head3:LJ002-0053", "LJ002-0054"), 0.3),  # "It had been ... It had been for some time ..."
    (("LJ001-0147", "x2:LJ001-0125"), 0.3),
)
PART_GAP_SECONDS = 1.2  # between parts: the VAD closes the utterance


@dataclass
class RepeatedSpeech:
    audio: np.ndarray
    reference: str
    turns: list[dict] = field(default_factory=list)  # start, end, text per part (audio clock)


def _clip(eval_dir: Path, name: str) -> np.ndarray:
    return read_audio(eval_dir / LJ / f"{name}.flac")


def _edge_words(engine, audio: np.ndarray, reference: str, count: int, head: bool) -> tuple[np.ndarray, str]:
    """The clip's first (or last) `count` words, cut at the model's own word timings; the words
    must be the reference's, so the built reference stays true."""
    words = [w for seg in engine.transcribe(audio, language="en").segments for w in seg.words]
    ref_words = reference.split()
    chosen = words[:count] if head else words[-count:]
    ref_chosen = ref_words[:count] if head else ref_words[-count:]
    said = normalize(" ".join(w["word"] for w in chosen))
    if said != normalize(" ".join(ref_chosen)):
        raise ValueError(f"offline words {said!r} are not the reference's {ref_chosen!r}")
    if head:
        end = min(chosen[-1]["end"] + 0.05, words[count]["start"]) if len(words) > count else chosen[-1]["end"]
        return audio[: int(end * SAMPLE_RATE)], " ".join(ref_chosen)
    start = max(chosen[0]["start"] - 0.05, words[-count - 1]["end"]) if len(words) > count else chosen[0]["start"]
    return audio[int(start * SAMPLE_RATE) :], " ".join(ref_chosen)


def build(engine, eval_dir: Path, manifest: dict, parts=PARTS) -> RepeatedSpeech:
    """The parts joined, with the reference text that goes with them."""
    references = {Path(k).stem: v["reference_text"] for k, v in manifest.items() if v.get("reference_text")}
    pieces: list[np.ndarray] = []
    texts: list[str] = []
    turns: list[dict] = []
    at = 0
    for clips, gap in parts:
        start, part_texts = at, []
        for i, spec in enumerate(clips):
            kind, _, name = spec.rpartition(":")
            audio, text = _clip(eval_dir, name), references[name]
            said: list[tuple[np.ndarray, str]] = [(audio, text)]
            if kind == "x2":
                said = [(audio, text), (audio, text)]
            elif kind == "head3":
                said = [_edge_words(engine, audio, text, 3, head=True), (audio, text)]
            elif kind == "tail2":
                said = [(audio, text), _edge_words(engine, audio, text, 2, head=False)]
            for j, (piece, piece_text) in enumerate(said):
                if i or j:
                    pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
                    at += int(gap * SAMPLE_RATE)
                pieces.append(piece.astype(np.float32))
                at += len(piece)
                part_texts.append(piece_text)
        turns.append({"start": start / SAMPLE_RATE, "end": at / SAMPLE_RATE, "text": " ".join(part_texts)})
        texts.extend(part_texts)
        pieces.append(np.zeros(int(PART_GAP_SECONDS * SAMPLE_RATE), np.float32))
        at += int(PART_GAP_SECONDS * SAMPLE_RATE)
    return RepeatedSpeech(np.concatenate(pieces), " ".join(texts), turns)
