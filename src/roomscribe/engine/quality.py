"""Checks that keep text off silence, noise and music, and stop repetition loops."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .whisper import DecodeResult, compression_ratio


def trim_repetition(tokens: Sequence[int], max_pattern: int = 12) -> list[int]:
    """Cut a run where a token pattern repeats back to back (a decoder loop) to one copy."""
    tokens = list(tokens)
    n = len(tokens)
    for i in range(n):
        for length in range(1, max_pattern + 1):
            if i + 2 * length > n:
                break
            pattern = tokens[i:i + length]
            repeats = 1
            j = i + length
            while j + length <= n and tokens[j:j + length] == pattern:
                repeats += 1
                j += length
            needed = 4 if length <= 2 else 3
            if repeats >= needed:
                return tokens[:i + length]
    return tokens


@dataclass
class QualityGate:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    compression_ratio_threshold: float = 2.4
    max_words_per_second: float = 7.0

    def accept(self, result: DecodeResult, runner, prefix: Sequence[int]) -> list[int]:
        """The generated tokens worth keeping; [] when the whole hypothesis looks spurious."""
        tokens = trim_repetition(result.tokens)
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
