"""The diarization backends behind `engine.speakers.SpeakerBackend`, and what each needs.

`campplus` (default, extra `roomscribe[diarization]`): CAM++ embeddings of short windows of
speech, clustered online per track (`engine.speakers`) or all at once for a file (`files`).
`sortformer` (extra `roomscribe[sortformer]`): NVIDIA's streaming Sortformer through NeMo
(`sortformer`), at most four voices a track.
"""

from __future__ import annotations

import numpy as np

from ..engine.clusters import SpeakerHints
from ..engine.speakers import DiarizerChoice, SpeakerBackend, TrackDiarizer
from .encoder import SpeakerEncoder
from .extras import require_packages
from .files import diarize_audio


class EmbeddingDiarizer:
    """campplus: one CAM++ encoder for the process; each track clusters its own windows."""

    def __init__(self, encoder: SpeakerEncoder):
        self.encoder = encoder

    def track(self, hints: SpeakerHints) -> TrackDiarizer:
        return TrackDiarizer(self.encoder.embed, hints)

    def work(self, tracks: list[TrackDiarizer]) -> None:
        """Every track's due windows embedded in one batch."""
        due = [(track, window) for track in tracks for window in track.due()]
        if not due:
            return
        embeddings = self.encoder.embed([w.audio for _, w in due])
        for (track, window), embedding in zip(due, embeddings):
            track.learn(window, embedding)

    def diarize(self, audio: np.ndarray, vad, hints: SpeakerHints):
        return diarize_audio(audio, self.encoder, vad, hints)


def load_diarizer(choice: DiarizerChoice) -> SpeakerBackend:
    require_packages(choice.name)
    if choice.name == "sortformer":
        from .sortformer import SortformerDiarizer

        return SortformerDiarizer.load(choice.model)
    return EmbeddingDiarizer(SpeakerEncoder(choice.model))
