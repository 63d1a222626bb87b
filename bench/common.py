"""Shared helpers for benchmarks: the eval set, WER, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

EVAL = Path(os.environ.get("ROOMSCRIBE_EVAL", ROOT.parent / "shared" / "eval"))
RESULTS = ROOT / "bench" / "results"


def manifest() -> list[dict]:
    path = EVAL / "manifest.jsonl"
    if not path.is_file():
        sys.exit(f"eval set not found at {EVAL} (set ROOMSCRIBE_EVAL)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load(entry_or_path) -> np.ndarray:  # noqa: F821
    import soundfile as sf

    path = EVAL / (entry_or_path["audio"] if isinstance(entry_or_path, dict) else entry_or_path)
    audio, sr = sf.read(path, dtype="float32", always_2d=False)
    if audio.ndim > 1:
        audio = audio.mean(axis=1)
    assert sr == 16000, f"{path}: expected 16 kHz, got {sr}"
    return audio


_normalizer = None


def normalize(text: str) -> str:
    """Whisper's English normaliser (package whisper-normalizer): case, punctuation, numbers."""
    global _normalizer
    if _normalizer is None:
        from whisper_normalizer.english import EnglishTextNormalizer

        _normalizer = EnglishTextNormalizer()
    return " ".join(_normalizer(text).split())


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus WER (%) after normalisation."""
    import jiwer

    refs, hyps = [], []
    for r, h in zip(references, hypotheses):
        r = normalize(r)
        if r:
            refs.append(r)
            hyps.append(normalize(h) or "<empty>")
    return 100.0 * jiwer.wer(refs, hyps)


def machine() -> dict:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = "unknown", False
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": commit + ("+dirty" if dirty else ""),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False))
    return path


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class ChildProcess:
    """A `roomscribe` command in its own process, its output in `log`, and its CPU use."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        import psutil

        self.log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "import sys; from roomscribe.cli import main; sys.exit(main())", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.ps = psutil.Process(self.proc.pid)

    def cpu_seconds(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
