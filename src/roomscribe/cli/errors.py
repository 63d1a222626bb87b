"""How the command ends when it cannot do what was asked."""

from __future__ import annotations

import sys

EXIT_BAD_INPUT = 2  # a missing, unreadable or bad file or option
EXIT_NO_MODEL = 3  # the model's weights are not installed


def fail(message: str, code: int) -> int:
    print(f"roomscribe: error: {message}", file=sys.stderr)
    return code
