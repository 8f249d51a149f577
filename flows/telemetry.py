"""Counters and timings of a run: the summary's numbers, and later Prometheus' too.

Operators count what they used in a ``counts`` Counter keyed by ``(name, label)``;
the step adapters drain those counters here after every batch, so operators stay
free of any metrics library and their snapshots carry no history.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any


class Telemetry:
    """Process-wide counters, safe to update from several bytewax worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.dlq: Counter[tuple[str, str]] = Counter()  # (topic, reason)
        self.stage_seconds: defaultdict[str, float] = defaultdict(float)
        self.stage_items: Counter[str] = Counter()
        self.listeners: list[Any] = []

    def count(self, name: str, label: str, n: int = 1) -> None:
        with self._lock:
            self.counts[(name, label)] += n

    def drain(self, operator: Any) -> None:
        counts: Counter | None = getattr(operator, "counts", None)
        if counts:
            with self._lock:
                self.counts.update(counts)
            for listener in self.listeners:
                listener.on_counts(counts)
            counts.clear()

    def dead_letters(self, records: list[dict]) -> None:
        with self._lock:
            for record in records:
                self.dlq[(record["topic"], record["reason"])] += 1

    def stage_batch(self, stage: str, items: int, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage] += seconds
            self.stage_items[stage] += items
        for listener in self.listeners:
            listener.on_stage(stage, items, seconds)

    def per_topic(self, name: str) -> dict[str, int]:
        return {label: n for (kind, label), n in sorted(self.counts.items()) if kind == name}
