"""Who said what in a whole recording: speech found by the VAD, CAM++ embeddings of short
windows over it, agglomerative clustering of all of them at once.

With the whole file in hand the clustering can compare every window with every other, which
the online clustering of a live track cannot; speaker-count hints become the number of
clusters. The same windows as a live track (`engine.speakers`) keep the two paths comparable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..engine.clusters import SpeakerHints
from ..engine.pcm import SAMPLE_RATE
from ..engine.speakers import HOP, MIN_SECONDS, SURE, WINDOW
from ..engine.vad import SileroVAD, VadStream

# Average-linkage clustering stops merging when the clusters' mean cosine similarity falls
# below this. On mtg_en_7spk (CAM++, 1.5 s windows) every value from 0.45 to 0.5 finds 9 or 10
# speakers for its 9 with under 1 % of speech confused; below 0.4 voices merge.
LINKAGE_SIMILARITY = 0.5
BATCH = 64


@dataclass
class SpeakerTurn:
    start: float
    end: float
    speaker: str


@dataclass
class FileWindow:
    region: int
    start: int
    end: int

    @property
    def centre(self) -> float:
        return (self.start + self.end) / 2 / SAMPLE_RATE


def speech_regions(audio: np.ndarray, vad: SileroVAD) -> list[tuple[int, int]]:
    """(start, end) samples of the speech Silero VAD finds in the recording."""
    stream = VadStream(vad)
    events = stream.push(audio) + stream.finish()
    regions: list[tuple[int, int]] = []
    start: int | None = None
    for ev in events:
        if ev.kind == "start":
            start = ev.sample
        elif start is not None:
            regions.append((start, min(ev.sample, len(audio))))
            start = None
    if start is not None:
        regions.append((start, len(audio)))
    return [(a, b) for a, b in regions if b - a >= int(MIN_SECONDS * SAMPLE_RATE)]


def windows_over(regions: list[tuple[int, int]]) -> list[FileWindow]:
    """Windows as a live track has them: every hop over each region, its tail covered too."""
    out: list[FileWindow] = []
    for k, (lo, hi) in enumerate(regions):
        if hi - lo <= WINDOW:
            out.append(FileWindow(k, lo, hi))
            continue
        end = lo + WINDOW
        while end <= hi:
            out.append(FileWindow(k, end - WINDOW, end))
            end += HOP
        if hi - out[-1].end >= HOP // 3:
            out.append(FileWindow(k, hi - WINDOW, hi))
    return out


def cluster(embeddings: np.ndarray, hints: SpeakerHints, sure: np.ndarray | None = None) -> np.ndarray:
    """A label per embedding, numbered in order of first appearance. Only the `sure` ones
    (long enough to say who speaks) shape the clusters; the rest join the nearest."""
    if sure is not None and sure.sum() >= 2 and not sure.all():
        labels = np.full(len(embeddings), -1)
        labels[sure] = _cluster(embeddings[sure], hints)
        centroids = np.stack([embeddings[labels == k].mean(axis=0) for k in range(labels.max() + 1)])
        labels[~sure] = np.argmax(embeddings[~sure] @ centroids.T, axis=1)
        order: dict[int, int] = {}
        return np.array([order.setdefault(int(x), len(order)) for x in labels], dtype=int)
    return _cluster(embeddings, hints)


def _cluster(embeddings: np.ndarray, hints: SpeakerHints) -> np.ndarray:
    from sklearn.cluster import AgglomerativeClustering

    if len(embeddings) == 0:
        return np.zeros(0, dtype=int)
    if len(embeddings) == 1:
        return np.zeros(1, dtype=int)

    def fit(n: int | None) -> np.ndarray:
        model = AgglomerativeClustering(
            n_clusters=n,
            distance_threshold=None if n else 1.0 - LINKAGE_SIMILARITY,
            metric="cosine",
            linkage="average",
        )
        return model.fit(embeddings).labels_

    labels = fit(min(hints.num_speakers, len(embeddings)) if hints.num_speakers else None)
    found = len(set(labels.tolist()))
    if found < hints.floor and len(embeddings) >= hints.floor:
        labels = fit(hints.floor)
    elif found > hints.cap:
        labels = fit(hints.cap)
    order: dict[int, int] = {}
    return np.array([order.setdefault(int(x), len(order)) for x in labels], dtype=int)


class FileDiarization:
    """The speakers of one recording, as windows with labels; asks answer by time."""

    def __init__(self, windows: list[FileWindow], labels: np.ndarray, regions: list[tuple[int, int]]):
        self.windows = windows
        self.labels = labels
        self.regions = regions
        self._centres = np.array([w.centre for w in windows])

    @property
    def speakers(self) -> list[str]:
        return [f"S{k + 1}" for k in sorted(set(self.labels.tolist()))]

    def speaker_at(self, seconds: float) -> str | None:
        if not self.windows:
            return None
        return f"S{int(self.labels[int(np.argmin(np.abs(self._centres - seconds)))]) + 1}"

    def turns(self) -> list[SpeakerTurn]:
        """Speech regions cut where the speaker changes (halfway between window centres)."""
        turns: list[SpeakerTurn] = []
        for k, (lo, hi) in enumerate(self.regions):
            idx = [i for i, w in enumerate(self.windows) if w.region == k]
            for j, i in enumerate(idx):
                start = lo / SAMPLE_RATE if j == 0 else (self._centres[idx[j - 1]] + self._centres[i]) / 2
                end = hi / SAMPLE_RATE if j == len(idx) - 1 else (self._centres[i] + self._centres[idx[j + 1]]) / 2
                speaker = f"S{int(self.labels[i]) + 1}"
                if turns and turns[-1].speaker == speaker and abs(turns[-1].end - start) < 1e-6:
                    turns[-1].end = end
                elif end > start:
                    turns.append(SpeakerTurn(start, end, speaker))
        return turns


def diarize_audio(audio: np.ndarray, encoder, vad: SileroVAD, hints: SpeakerHints | None = None) -> FileDiarization:
    """Speakers of a 16 kHz mono recording."""
    hints = hints or SpeakerHints()
    regions = speech_regions(audio, vad)
    windows = windows_over(regions)
    embeddings = np.zeros((0, 1), dtype=np.float32)
    if windows:
        batches = [windows[i : i + BATCH] for i in range(0, len(windows), BATCH)]
        embeddings = np.concatenate([encoder.embed([audio[w.start : w.end] for w in batch]) for batch in batches])
    sure = np.array([w.end - w.start >= SURE for w in windows], dtype=bool)
    return FileDiarization(windows, cluster(embeddings, hints, sure), regions)


def attribute(segments: list, diarization: FileDiarization, language: str | None) -> list:
    """Transcript segments with a speaker on every word, split where the speaker changes."""
    from ..engine.text import tidy_text

    out: list = []  # OfflineSegments, replaced rather than imported: the engine imports this module
    for seg in segments:
        if not seg.words:
            out.append(dataclasses.replace(seg, speaker=diarization.speaker_at((seg.start + seg.end) / 2)))
            continue
        runs: list[list[dict]] = []
        for word in seg.words:
            word = {**word, "speaker": diarization.speaker_at((word["start"] + word["end"]) / 2)}
            if runs and runs[-1][-1]["speaker"] == word["speaker"]:
                runs[-1].append(word)
            else:
                runs.append([word])
        for i, run in enumerate(runs):
            out.append(
                dataclasses.replace(
                    seg,
                    start=seg.start if i == 0 else run[0]["start"],
                    end=seg.end if i == len(runs) - 1 else run[-1]["end"],
                    text=seg.text if len(runs) == 1 else tidy_text(" ".join(w["word"] for w in run), language),
                    words=run,
                    speaker=run[0]["speaker"],
                )
            )
    return out


def speakers_summary(segments: list) -> dict:
    """Per speaker: total_duration, segments_count, text_parts (as meeting services report it)."""
    summary: dict[str, dict] = {}
    for seg in segments:
        if seg.speaker is None:
            continue
        entry = summary.setdefault(seg.speaker, {"total_duration": 0.0, "segments_count": 0, "text_parts": []})
        entry["total_duration"] = round(entry["total_duration"] + max(0.0, seg.end - seg.start), 3)
        entry["segments_count"] += 1
        entry["text_parts"].append(seg.text)
    return summary
