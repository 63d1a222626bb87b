"""Streaming commit policies (pure code)."""

from .alignatt import AlignAtt
from .base import Hypothesis, Policy, back_off_to_word, count_before
from .local_agreement import LocalAgreement

POLICIES = ("localagreement", "alignatt")


def make_policy(name: str, *, frame_threshold: int = 25) -> Policy:
    key = name.lower().replace("-", "").replace("_", "")
    if key in ("localagreement", "la", "la2"):
        return LocalAgreement()
    if key == "alignatt":
        return AlignAtt(frame_threshold=frame_threshold)
    raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")


__all__ = ["AlignAtt", "Hypothesis", "LocalAgreement", "Policy", "POLICIES", "back_off_to_word", "count_before", "make_policy"]
