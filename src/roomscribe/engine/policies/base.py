"""What a streaming policy decides: how much of a new hypothesis to commit.

A policy sees the tokens generated after the forced prefix (the text already
committed inside the window) and returns how many of them are stable enough to
commit. Policies are pure: no I/O, no model, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass
class Hypothesis:
    tokens: Sequence[int]  # generated after the prefix
    token_ends: Sequence[float]  # seconds from the window start, per generated token
    word_starts: Sequence[bool]  # whether each token begins a new word
    content_seconds: float  # audio in the window (without padding)
    token_probs: Sequence[float] = ()  # the model's probability of each generated token


class Policy(Protocol):
    name: str

    def commit_count(self, hyp: Hypothesis) -> int:
        """How many leading tokens of `hyp` to commit now."""

    def committed(self, count: int) -> None:
        """Tell the policy that `count` tokens were committed (by it or by force)."""

    def reset(self) -> None:
        """A new window with no shared history (utterance start, window cut)."""


def back_off_to_word(count: int, hyp: Hypothesis) -> int:
    """Largest n <= count such that token n starts a new word (so only whole words commit).

    A word at the very end of the hypothesis is never whole: more audio may extend it.
    """
    n = min(count, len(hyp.tokens))
    while n > 0 and (n >= len(hyp.tokens) or not hyp.word_starts[n]):
        n -= 1
    return n


def count_before(hyp: Hypothesis, limit: float) -> int:
    """Whole-word tokens that end by `limit` seconds into the window."""
    n = 0
    for end in hyp.token_ends:
        if end > limit:
            break
        n += 1
    return back_off_to_word(n, hyp)
