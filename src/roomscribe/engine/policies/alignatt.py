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

    def __init__(self, frame_threshold: int = 25):
        if frame_threshold < 1:
            raise ValueError("frame_threshold must be at least one frame")
        self.frame_threshold = frame_threshold

    def commit_count(self, hyp: Hypothesis) -> int:
        limit = hyp.content_seconds - self.frame_threshold * FRAME_SECONDS
        n = 0
        for end in hyp.token_ends:
            if end > limit:
                break
            n += 1
        return back_off_to_word(n, hyp)

    def committed(self, count: int) -> None:
        pass

    def reset(self) -> None:
        pass
