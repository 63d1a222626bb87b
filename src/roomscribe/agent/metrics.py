"""Prometheus metrics of the caption worker: lag per stream, slow-down level, model load, and
how far translations trail captions.

Off by default. With `ROOMSCRIBE_PROMETHEUS_PORT` set, livekit-agents serves them (with its
own worker metrics) at `:PORT/metrics`. They hold numbers only: no caption text, no
participant identities (streams are labelled by their random engine ids).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily

from ..session.scheduler import EngineWorker, all_workers
from ..translation import TranslationService


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


class TranslationCollector:
    """Reads the process's translation queue at scrape time (nothing while it has none)."""

    def __init__(self, service: Callable[[], TranslationService | None]):
        self._service = service

    def collect(self):
        service = self._service()
        if service is None:
            return []
        status = service.status()
        labels = [status["backend"]]
        queued = GaugeMetricFamily("roomscribe_translation_queued", "Translations waiting", labels=["backend"])
        queued.add_metric(labels, status["queued"])
        failing = GaugeMetricFamily(
            "roomscribe_translation_failing", "1 while translations keep failing", labels=["backend"]
        )
        failing.add_metric(labels, 1.0 if status["state"] == "failing" else 0.0)
        lag = GaugeMetricFamily(
            "roomscribe_translation_lag_seconds",
            "How long recent translations waited after their caption's final",
            labels=["backend", "quantile"],
        )
        for quantile, key in (("0.5", "lag_p50"), ("0.9", "lag_p90")):
            if status[key] is not None:
                lag.add_metric([*labels, quantile], status[key])
        counts = [queued, failing, lag]
        for key, help_text in (
            ("translated", "Translations done"),
            ("failed", "Translations that failed"),
            ("timed_out", "Translations given up after the timeout"),
            ("dropped", "Translations dropped because the model was behind"),
        ):
            family = CounterMetricFamily(f"roomscribe_translations_{key}", help_text, labels=["backend"])
            family.add_metric(labels, status[key])
            counts.append(family)
        return counts


_registered = False


def register() -> None:
    """Add the collectors to the default registry (once), which livekit-agents serves."""
    global _registered
    if not _registered:
        from ..translation import shared_translation

        REGISTRY.register(SchedulerCollector())
        REGISTRY.register(TranslationCollector(shared_translation))
        _registered = True
