"""PNGs of what users see: the page of `roomscribe serve` (empty, captioning two participants,
a transcribed file) and the example frontends in examples/web (livekit-client and React,
each showing two participants' captions from the caption agent).

    python bench/screenshots.py [--out DIR]

The pictures are taken by the browser tests that reach those states (marked `screenshots`),
run here with ROOMSCRIBE_SCREENSHOTS=DIR: real headless Chromium, the real server or the
emulated LiveKit room with the real agent, and real speech from ../shared/eval. It needs what
those tests need (root for the private network namespace, Debian's chromium and
chromium-driver, npm for the example bundles) and takes a few minutes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = (
    "serve-empty",
    "serve-two-participants",
    "serve-file",
    "example-livekit-client",
    "example-react",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "screenshots", help="where the PNGs go")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.png"):
        old.unlink()
    env = dict(os.environ, ROOMSCRIBE_SCREENSHOTS=str(out))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "screenshots", "-p", "no:cacheprovider", "tests"]
    result = subprocess.run(command, cwd=ROOT, env=env, check=False)
    made = sorted(p.stem for p in out.glob("*.png"))
    for name in made:
        print(f"{out / name}.png")
    missing = [name for name in EXPECTED if name not in made]
    if missing:
        print(f"not made: {', '.join(missing)} (see the test output above)", file=sys.stderr)
    return 1 if missing or result.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
