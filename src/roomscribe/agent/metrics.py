"""Prometheus metrics of the caption worker: lag per stream, slow-down level, model load.

Off by default. With `ROOMSCRIBE_PROMETHEUS_PORT` set, livekit-agents serves them (with its
own worker metrics) at `:PORT/metrics`. They hold numbers only: no caption text, no
participant identities (streams are labelled by their random engine ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import REGISTRY, GaugeMetricFamily

from ..session.scheduler import EngineWorker, all_workers


class SchedulerCollector:
    """Reads every scheduler's `status()` at scrape time, so closed streams simply vanish."""

    def __init__(self, workers: Callable[[], Iterable[EngineWorker]] = all_workers):
        self._workers = workers

    def collect(self):
        streams = GaugeMetricFamily("roomscribe_streams", "Open speech streams", labels=["model"])
        busy = GaugeMetricFamily(
            "roomscribe_model_busy_ratio", "Share of the last 5 s the model was busy", labels=["model"]
        )
        level = GaugeMetricFamily(
            "roomscribe_slowdown_level",
            "How far streams are slowed down to keep lag bounded (0: full speed)",
            labels=["model"],
        )
        worst = GaugeMetricFamily("roomscribe_max_lag_seconds", "Largest lag of any stream", labels=["model"])
        lag = GaugeMetricFamily(
            "roomscribe_stream_lag_seconds",
            "How long the oldest speech not yet captioned has waited",
            labels=["model", "stream"],
        )
        for worker in self._workers():
            status = worker.status()
            model = status["model"]
            streams.add_metric([model], status["streams"])
            busy.add_metric([model], status["busy"])
            level.add_metric([model], status["level"])
            worst.add_metric([model], status["max_lag"])
            for stream_id, seconds in status["stream_lags"].items():
                lag.add_metric([model, stream_id], seconds)
        return [streams, busy, level, worst, lag]


_registered = False


def register() -> None:
    """Add the collector to the default registry (once), which livekit-agents serves."""
    global _registered
    if not _registered:
        REGISTRY.register(SchedulerCollector())
        _registered = True
