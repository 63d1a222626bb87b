"""Online clustering of speaker embeddings: pure numpy, bounded memory, stable labels.

Each speaker is a centroid (the running sum of its unit embeddings). A new embedding joins
the nearest centroid when it is similar enough, else opens a new speaker while the cap allows;
centroids that converge are merged, the younger label folding into the older, so a label once
given keeps meaning the same person. Memory is one vector per speaker, whatever the length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_SPEAKERS = 16
# Cosine similarity of a window's CAM++ embedding to a speaker's centroid: measured on
# mtg_en_7spk (1.5 s windows), same-speaker pairs sit above 0.58 (5th percentile) and
# different-speaker pairs below 0.49 (99th percentile); a centroid is closer to its own.
JOIN_SIMILARITY = 0.55
MERGE_SIMILARITY = 0.72


@dataclass(frozen=True)
class SpeakerHints:
    """What the caller knows of the number of speakers on a track."""

    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for name in ("num_speakers", "min_speakers", "max_speakers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a whole number of at least 1, not {value!r}")
            if value is not None and value > MAX_SPEAKERS:
                raise ValueError(f"{name} must be at most {MAX_SPEAKERS}, not {value}")
        if self.num_speakers is not None and (self.min_speakers is not None or self.max_speakers is not None):
            raise ValueError("give num_speakers or min_speakers/max_speakers, not both")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise ValueError(f"min_speakers ({self.min_speakers}) is more than max_speakers ({self.max_speakers})")

    @property
    def cap(self) -> int:
        return self.num_speakers or self.max_speakers or MAX_SPEAKERS

    @property
    def floor(self) -> int:
        return self.num_speakers or self.min_speakers or 1


class OnlineClusters:
    """Speakers found so far on one track; labels are 0, 1, 2 ... in order of appearance."""

    def __init__(
        self, hints: SpeakerHints | None = None, join: float = JOIN_SIMILARITY, merge: float = MERGE_SIMILARITY
    ):
        self.hints = hints or SpeakerHints()
        self.join = join
        self.merge = merge
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._alias: dict[int, int] = {}  # merged label -> the label it joined
        self._tentative: set[int] = set()  # opened by a window too short to be sure of, alone so far
        self._next = 0

    @property
    def speakers(self) -> list[int]:
        return sorted(self._sums)

    def resolve(self, label: int) -> int:
        """The label a (possibly merged) label stands for now."""
        while label in self._alias:
            label = self._alias[label]
        return label

    def _centroids(self) -> tuple[list[int], np.ndarray]:
        labels = self.speakers
        sums = np.stack([self._sums[k] for k in labels])
        return labels, sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-8)

    def similarities(self, embedding: np.ndarray) -> dict[int, float]:
        if not self._sums:
            return {}
        labels, centroids = self._centroids()
        return dict(zip(labels, (centroids @ embedding).tolist()))

    def nearest(self, embedding: np.ndarray) -> int | None:
        """The closest speaker, without learning from the embedding (for provisional labels)."""
        sims = self.similarities(embedding)
        return max(sims, key=sims.__getitem__) if sims else None

    def assign(self, embedding: np.ndarray, weight: float = 1.0, can_open: bool = True) -> int:
        """The speaker of `embedding` (unit length), learning from it. An embedding of too
        little speech to be sure of (`can_open` false) joins the nearest speaker, if any."""
        sims = self.similarities(embedding)
        best = max(sims, key=sims.__getitem__) if sims else None
        # A speaker count given bounds the speakers from above (no more open) and from below
        # (no merge under it); it never opens one early, when a voice's first windows are noisy.
        if can_open and best is not None and sims[best] < self.join and self._tentative:
            # A sure voice unlike every speaker: it takes over the label a lone short window
            # opened (a first "Yes." says too little to be a speaker of its own).
            label = min(self._tentative)
            self._tentative.discard(label)
            self._sums[label] = embedding * weight
            return label
        if best is None or (can_open and sims[best] < self.join and len(sims) < self.hints.cap):
            label = self._next
            self._next += 1
            self._sums[label] = embedding * weight
            self._counts[label] = 1
            if not can_open:
                self._tentative.add(label)
            return label
        if can_open:
            self._tentative.discard(best)
        self._sums[best] = self._sums[best] + embedding * weight
        self._counts[best] += 1
        self._merge_converged()
        return self.resolve(best)

    def _merge_converged(self) -> None:
        """Fold speakers whose centroids have come together (the same voice split early)."""
        while len(self._sums) > self.hints.floor:
            labels, centroids = self._centroids()
            sims = centroids @ centroids.T
            np.fill_diagonal(sims, -1.0)
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
            if sims[i, j] < self.merge:
                return
            keep, drop = sorted((labels[i], labels[j]))
            self._tentative.discard(drop)
            self._sums[keep] = self._sums[keep] + self._sums.pop(drop)
            self._counts[keep] += self._counts.pop(drop)
            self._alias[drop] = keep
