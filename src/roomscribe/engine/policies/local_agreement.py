"""LocalAgreement-2: commit the prefix on which two consecutive hypotheses agree."""

from __future__ import annotations

from .base import Hypothesis, back_off_to_word


class LocalAgreement:
    name = "localagreement"

    def __init__(self, agreement: int = 2):
        if agreement < 2:
            raise ValueError("LocalAgreement needs at least two hypotheses to agree")
        self.agreement = agreement
        self._history: list[list[int]] = []  # recent continuations after the committed prefix

    def commit_count(self, hyp: Hypothesis) -> int:
        current = list(hyp.tokens)
        self._history.append(current)
        self._history = self._history[-self.agreement :]
        if len(self._history) < self.agreement:
            return 0
        agreed = len(current)
        for other in self._history[:-1]:
            n = 0
            for a, b in zip(current, other):
                if a != b:
                    break
                n += 1
            agreed = min(agreed, n)
        return back_off_to_word(agreed, hyp)

    def committed(self, count: int) -> None:
        if count:
            self._history = [h[count:] for h in self._history]

    def reset(self) -> None:
        self._history = []
