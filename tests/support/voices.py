"""Two real voices on one track, cut from the eval set's mixed meeting at its reference turns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .speech import read_audio

SAMPLE_RATE = 16000
MEETING = "meetings/mixed/mtg_en_7spk"
# (start, end) seconds in the meeting of turns with no other voice within them, and what is said.
ALLISON = ((8.8, 11.1), (11.5, 19.0))
LJ_SPEECH = ((171.3, 177.7), (162.7, 170.8))
SAID = {
    "Allison": "At the tone, please say your name. Press 2 to change folders, press 3 for advanced options, "
    "press zero for mailbox options.",
    "LJ": "Neild takes it for granted that the former rather than the latter prevailed in the selection. This "
    "experiment was so far successful that about eighteen fifty Messrs. Miller and Richard of Edinburgh",
}
COMMON = {"the", "a", "to", "for", "that", "in", "of", "and", "was", "it", "so", "than", "about"}


def voice_of_text(text: str) -> str | None:
    """Whose words a caption's text has (the voice sharing more distinctive words with it)."""
    words = {w.strip(".,?!").lower() for w in text.split()} - COMMON
    shared = {v: len(words & ({w.strip(".,").lower() for w in said.split()} - COMMON)) for v, said in SAID.items()}
    best = max(shared, key=shared.__getitem__)
    return best if shared[best] > 0 and list(shared.values()).count(shared[best]) == 1 else None


@dataclass
class Turn:
    start: float
    end: float
    speaker: str


@dataclass
class MixedTrack:
    audio: np.ndarray
    turns: list[Turn]

    def speaker_at(self, seconds: float) -> str | None:
        for t in self.turns:
            if t.start <= seconds <= t.end:
                return t.speaker
        return None


def two_voices(eval_dir: Path, gaps: tuple[float, ...] = (0.3, 1.2, 0.3)) -> MixedTrack:
    """Allison, LJ, Allison, LJ: the first change of voice inside one utterance (a gap shorter
    than the VAD's end of speech), the next after a pause, the last inside an utterance again."""
    meeting = read_audio(eval_dir / f"{MEETING}.flac")
    order = [("Allison", ALLISON[0]), ("LJ", LJ_SPEECH[0]), ("Allison", ALLISON[1]), ("LJ", LJ_SPEECH[1])]
    pieces: list[np.ndarray] = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)]
    turns: list[Turn] = []
    at = 0.5
    for i, (speaker, (start, end)) in enumerate(order):
        clip = meeting[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]
        pieces.append(clip)
        turns.append(Turn(at, at + len(clip) / SAMPLE_RATE, speaker))
        at += len(clip) / SAMPLE_RATE
        gap = gaps[i] if i < len(gaps) else 1.0
        pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
        at += int(gap * SAMPLE_RATE) / SAMPLE_RATE
    return MixedTrack(np.concatenate(pieces), turns)
