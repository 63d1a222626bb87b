"""Streaming commit policies (pure code)."""

from typing import Literal, get_args

from .alignatt import AlignAtt
from .base import Hypothesis, Policy, back_off_to_word, count_before
from .local_agreement import LocalAgreement

PolicyName = Literal["localagreement", "alignatt"]
POLICIES: tuple[PolicyName, ...] = get_args(PolicyName)  # the one list of policy names


def make_policy(name: str, *, frame_threshold: int = 25) -> Policy:
    key = name.lower().replace("-", "").replace("_", "")
    if key in ("localagreement", "la", "la2"):
        return LocalAgreement()
    if key == "alignatt":
        return AlignAtt(frame_threshold=frame_threshold)
    raise ValueError(f"unknown policy {name!r}: choose one of {', '.join(POLICIES)}")


__all__ = [
    "AlignAtt",
    "Hypothesis",
    "LocalAgreement",
    "Policy",
    "POLICIES",
    "PolicyName",
    "back_off_to_word",
    "count_before",
    "make_policy",
]
