"""Graceful degradation under load: pure code, driven by the scheduler's clock.

All streams share one model, so when compute falls behind every stream gives up the same
step (see `Pace`): a shorter window, words committed once old enough, decodes further
apart. Latency then stays bounded where it would otherwise grow without end.
What decides is how overdue the worst stream is: its lag beyond its own decode interval,
which is the part compute adds.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engine.utterance import Pace

LEVELS: tuple[Pace, ...] = (
    Pace(),  # full speed: the stream's own settings
    Pace(max_window_seconds=8.0, commit_after_seconds=2.0),
    Pace(interval_scale=1.5, max_window_seconds=6.0, commit_after_seconds=1.5),
    Pace(interval_scale=2.0, max_window_seconds=4.0, commit_after_seconds=1.0),
)


@dataclass
class GovernorConfig:
    raise_overdue: float = 1.0  # slow down a level when the worst stream is this late...
    raise_every: float = 1.0  # ...at most once per this many seconds
    relax_overdue: float = 0.4  # speed up a level once every stream has been within this...
    relax_after: float = 5.0  # ...for this long


class LagGovernor:
    def __init__(self, config: GovernorConfig | None = None, levels: tuple[Pace, ...] = LEVELS):
        self.config = config or GovernorConfig()
        self.levels = levels
        self.level = 0
        self._changed_at: float | None = None
        self._calm_since: float | None = None

    @property
    def pace(self) -> Pace:
        return self.levels[self.level]

    @property
    def saturated(self) -> bool:
        """At the slowest level: nothing is left to give up but lag."""
        return self.level == len(self.levels) - 1

    def reset(self) -> None:
        self.level = 0
        self._changed_at = self._calm_since = None

    def update(self, worst_overdue: float, now: float) -> Pace:
        cfg = self.config
        if worst_overdue > cfg.raise_overdue:
            self._calm_since = None
            since = None if self._changed_at is None else now - self._changed_at
            if not self.saturated and (since is None or since >= cfg.raise_every):
                self.level += 1
                self._changed_at = now
        elif worst_overdue <= cfg.relax_overdue:
            if self._calm_since is None:
                self._calm_since = now
            elif self.level > 0 and now - self._calm_since >= cfg.relax_after:
                self.level -= 1
                self._changed_at = self._calm_since = now
        else:
            self._calm_since = None
        return self.pace
