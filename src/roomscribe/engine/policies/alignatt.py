"""AlignAtt: commit tokens whose attention lies clear of the end of the window.

A token aligned (by cross-attention, through DTW over the alignment heads) to
frames within `frame_threshold` frames of the end of the audio may still change
as more audio arrives; tokens before it are committed at once, with no second
hypothesis needed.
"""

from __future__ import annotations

from .base import Hypothesis, back_off_to_word

FRAME_SECONDS = 0.02


class AlignAtt:
    name = "alignatt"

    def __init__(self, frame_threshold: int = 25, min_probability: float = 0.25, min_window_seconds: float = 1.0):
        if frame_threshold < 1:
            raise ValueError("frame_threshold must be at least one frame")
        self.frame_threshold = frame_threshold
        # Alignment alone trusts any token; a token the model itself doubts, or one decoded
        # from a sliver of audio, waits for more context.
        self.min_probability = min_probability
        self.min_window_seconds = min_window_seconds

    def commit_count(self, hyp: Hypothesis) -> int:
        if hyp.content_seconds < self.min_window_seconds:
            return 0
        limit = hyp.content_seconds - self.frame_threshold * FRAME_SECONDS
        probs = list(hyp.token_probs) or [1.0] * len(hyp.tokens)
        n = 0
        for end, prob in zip(hyp.token_ends, probs):
            if end > limit or prob < self.min_probability:
                break
            n += 1
        return back_off_to_word(n, hyp)

    def committed(self, count: int) -> None:
        pass

    def reset(self) -> None:
        pass
