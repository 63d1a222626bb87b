"""Checks that keep text off silence, noise and music, and stop repetition loops."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .text import normalize_word
from .whisper import DecodeResult, compression_ratio


def trim_repetition(tokens: Sequence[int], prefix: Sequence[int] = (), max_pattern: int = 48) -> list[int]:
    """Cut a decoder loop (a token pattern repeated back to back) down to its first copy.

    Whisper on a short window often transcribes the window and then starts over;
    the check runs over prefix + tokens so a restart of the committed text counts too.
    Short patterns must repeat more often before they count as a loop.
    """
    seq = [*prefix, *tokens]
    n = len(seq)
    for i in range(n):
        for length in range(1, min(max_pattern, (n - i) // 2) + 1):
            if i + 2 * length <= len(prefix):
                continue  # a loop wholly inside the committed prefix is history
            pattern = seq[i : i + length]
            repeats, j = 1, i + length
            while j + length <= n and seq[j : j + length] == pattern:
                repeats += 1
                j += length
            needed = 4 if length <= 2 else 3 if length <= 4 else 2
            if repeats >= needed:
                return seq[len(prefix) : max(len(prefix), i + length)]
    return list(tokens)


def cut_restart(tokens: Sequence[int], prefix: Sequence[int], decode, min_words: int = 3) -> list[int]:
    """Cut where the decoder starts the window's text over (case and punctuation folded)."""
    head = [normalize_word(w) for w in decode(list(prefix)).split()][:min_words]
    if len(head) < min_words or not all(head):
        return list(tokens)
    for j in range(1, len(tokens)):
        if not decode([tokens[j]]).startswith(" "):
            continue
        words = [normalize_word(w) for w in decode(list(tokens[j : j + 4 * min_words])).split()]
        if words[:min_words] == head:
            return list(tokens[:j])
    return list(tokens)


@dataclass
class QualityGate:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_words_per_second: float = 7.0

    def accept(self, result: DecodeResult, runner, prefix: Sequence[int]) -> list[int]:
        """The generated tokens worth keeping; [] when the whole hypothesis looks spurious."""
        tokens = trim_repetition(result.tokens, prefix)
        tokens = cut_restart(tokens, prefix, runner.decode_tokens)
        if not tokens:
            return []
        if result.no_speech_prob > self.no_speech_threshold and result.avg_logprob < self.logprob_threshold:
            return []
        text = runner.decode_tokens(list(prefix) + tokens)
        if compression_ratio(text) > self.compression_ratio_threshold and len(text) > 40:
            return []
        words = len(runner.decode_tokens(tokens).split())
        if words > self.max_words_per_second * max(result.window_seconds, 1.0) + 3:
            return []
        return tokens
