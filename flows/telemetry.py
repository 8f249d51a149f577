"""Counters, gauges and timings of a run: the summary's numbers, and Prometheus' too.

Operators keep what they have to report in three plain attributes — ``counts``
(a Counter keyed by ``(name, label)``), ``gauges`` (``(name, label) -> value``)
and ``observations`` (``(name, label, value)`` samples) — and the step adapters
drain them here after every batch, so operators stay free of any metrics library
and their snapshots carry no history. Listeners (the Prometheus exporter) see
every update.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from typing import Any, Protocol

#: Gauges that several operators (the lifecycle's shards of one tenant) report under
#: the same label, and how their values combine into the tenant's.
SHARD_GAUGES = {"event_clock_s": max, "event_first_s": min, "review_open_cases": sum,
                "review_oldest_open_s": min}
DAY_S = 86_400.0


class Listener(Protocol):
    def on_counts(self, counts: Counter) -> None: ...
    def on_gauges(self, gauges: dict) -> None: ...
    def on_observations(self, samples: list) -> None: ...
    def on_stage(self, stage: str, items: int, seconds: float) -> None: ...
    def on_dead_letters(self, records: list[dict]) -> None: ...


class Telemetry:
    """Process-wide counters, safe to update from several bytewax worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[tuple[str, str]] = Counter()
        self.gauges: dict[tuple[str, str], float] = {}
        self.dlq: Counter[tuple[str, str]] = Counter()  # (topic, reason)
        self.stage_seconds: defaultdict[str, float] = defaultdict(float)
        self.stage_items: Counter[str] = Counter()
        self.listeners: list[Listener] = []
        #: (name, tenant) -> {operator id: value} of the SHARD_GAUGES.
        self._parts: dict[tuple[str, str], dict[int, float]] = {}
        self._absorbed = 0  #: exports absorbed (see absorb)

    def count(self, name: str, label: str, n: int = 1) -> None:
        with self._lock:
            self.counts[(name, label)] += n
        if self.listeners:
            update = Counter({(name, label): n})
            for listener in self.listeners:
                listener.on_counts(update)

    def count_many(self, counts: Counter) -> None:
        """Several ``(name, label) -> n`` at once: one lock and one listener call per batch."""
        with self._lock:
            self.counts.update(counts)
        for listener in self.listeners:
            listener.on_counts(counts)

    def drain(self, operator: Any) -> None:
        counts: Counter | None = getattr(operator, "counts", None)
        if counts:
            with self._lock:
                self.counts.update(counts)
            for listener in self.listeners:
                listener.on_counts(counts)
            counts.clear()
        gauges: dict | None = getattr(operator, "gauges", None)
        if gauges:
            gauges = self._combine(id(operator), gauges)
            with self._lock:
                self.gauges.update(gauges)
            for listener in self.listeners:
                listener.on_gauges(gauges)
            gauges.clear()
        samples: list | None = getattr(operator, "observations", None)
        if samples:
            for listener in self.listeners:
                listener.on_observations(samples)
            samples.clear()
        stages: list | None = getattr(operator, "stage_times", None)
        if stages:  # an operator made of several agents times each of them
            for stage, items, seconds in stages:
                self.stage_batch(stage, items, seconds)
            stages.clear()

    def _combine(self, source: int, gauges: dict) -> dict:
        """An operator's gauges as the process-wide values: each of the SHARD_GAUGES
        combined over every operator that reported it (``None``: nothing to report,
        e.g. no open case), plus the tenant's review queue age in seconds."""
        plain = {k: v for k, v in gauges.items() if k[0] not in SHARD_GAUGES}
        tenants = set()
        with self._lock:
            for (name, label), value in gauges.items():
                if name in SHARD_GAUGES:
                    parts = self._parts.setdefault((name, label), {})
                    if value is None:
                        parts.pop(source, None)
                    else:
                        parts[source] = value
                    tenants.add(label)
            for tenant in tenants:
                values = {}
                for name, combine in SHARD_GAUGES.items():
                    parts = self._parts.get((name, tenant))
                    values[name] = combine(parts.values()) if parts else None
                    if name != "review_oldest_open_s":
                        plain[(name, tenant)] = values[name] or 0.0
                oldest, clock = values["review_oldest_open_s"], values["event_clock_s"]
                plain[("review_queue_age_s", tenant)] = (
                    max(0.0, clock - oldest) if oldest is not None and clock else 0.0)
        return plain

    def calibration(self) -> dict:
        """The published probability's calibration: scores matched to their horizon
        outcome, and the rolling ECE of each tenant's last matched scores."""
        ece = {t: round(v, 4) for (n, t), v in sorted(self.gauges.items()) if n == "model_ece"}
        return {"pairs_matched": sum(self.per_topic("calibration_pairs").values()),
                "ece_by_tenant": ece}

    def autonomy(self) -> dict:
        """The autonomy KPIs of the run: how much it decided without a person.

        A *decision* is a lead changing state on the flow's own routing (a first
        score, a plan, a handoff, an info request, a suppression...); one that opens
        a review case is a decision by a human. Days are the span of event time the
        lifecycle saw; the queue age is, per tenant, its latest event time minus the
        opening of its oldest open case (0 when none is open).
        """
        decisions = sum(self.per_topic("decisions").values())
        human = sum(self.per_topic("decisions_by_human").values())
        cases = self.per_topic("review_cases")
        investors = sum(self.per_topic("investors_scored").values())
        gauges = {(n, t): v for (n, t), v in self.gauges.items()}
        tenants = sorted({t for (n, t) in gauges if n == "event_clock_s"})
        clocks = [gauges[("event_clock_s", t)] for t in tenants]
        firsts = [gauges.get(("event_first_s", t)) for t in tenants]
        firsts = [f for f in firsts if f]
        days = (max(clocks) - min(firsts)) / DAY_S if clocks and firsts else 0.0
        ages = {t: round(gauges.get(("review_queue_age_s", t), 0.0) / DAY_S, 2) for t in tenants}
        total = sum(cases.values())
        per_1k = total / (investors / 1000) if investors else None
        return {
            "decisions": decisions,
            "decisions_by_human": human,
            "autonomy_rate": round(1 - human / decisions, 4) if decisions else None,
            "investors_scored": investors,
            "days": round(days, 2),
            "review_cases_per_1k_investors": round(per_1k, 2) if per_1k is not None else None,
            "review_cases_per_1k_investors_per_day": (round(per_1k / days, 3)
                                                      if per_1k is not None and days else None),
            "review_decisions": sum(self.per_topic("review_decisions").values()),
            "open_review_cases": int(sum(gauges.get(("review_open_cases", t), 0.0)
                                         for t in tenants)),
            "review_queue_age_days": max(ages.values(), default=0.0),
            "review_queue_age_days_by_tenant": ages,
            "review_cases_by_tenant": cases,
            "handoffs_by_tenant": self.per_topic("handoffs"),
            # Leads asked for missing profile facts (needs_info) instead of a person, and
            # those whose profile then arrived (back to scoring).
            "info_requests": sum(self.per_topic("info_requests").values()),
            "info_received": sum(self.per_topic("info_received").values()),
        }

    def dead_letters(self, records: list[dict]) -> None:
        with self._lock:
            for record in records:
                self.dlq[(record["topic"], record["reason"])] += 1
        for listener in self.listeners:
            listener.on_dead_letters(records)

    def stage_batch(self, stage: str, items: int, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage] += seconds
            self.stage_items[stage] += items
        for listener in self.listeners:
            listener.on_stage(stage, items, seconds)

    def export(self) -> dict:
        """What :meth:`summary` is made of, as JSON: one process's share of a run on
        several processes, for the parent to :meth:`absorb`. Gauges go as reported:
        the SHARD_GAUGES per operator, so that the parent combines them over every
        operator of every process; the others as they are (each is one tenant's, set
        by the one operator that holds the tenant).

        >>> a, b = Telemetry(), Telemetry()
        >>> a.count("in", "t", 2); a.dead_letters([{"topic": "t", "reason": "late"}])
        >>> _ = a._combine(1, {("event_clock_s", "t"): 50.0, ("event_first_s", "t"): 9.0})
        >>> _ = b._combine(1, {("event_clock_s", "t"): 70.0, ("event_first_s", "t"): 5.0})
        >>> b.count("in", "t", 3); b.absorb(a.export())
        >>> b.per_topic("in"), dict(b.dlq)
        ({'t': 5}, {('t', 'late'): 1})
        >>> b.gauges[("event_clock_s", "t")], b.gauges[("event_first_s", "t")]
        (70.0, 5.0)
        """
        derived = {*SHARD_GAUGES, "review_queue_age_s"}
        with self._lock:
            return {"counts": [[*key, n] for key, n in sorted(self.counts.items())],
                    "dlq": [[*key, n] for key, n in sorted(self.dlq.items())],
                    "stage_seconds": dict(self.stage_seconds),
                    "stage_items": dict(self.stage_items),
                    "gauges": [[*key, v] for key, v in sorted(self.gauges.items())
                               if key[0] not in derived],
                    "shard_gauges": [[name, label, source, value]
                                     for (name, label), parts in sorted(self._parts.items())
                                     for source, value in parts.items()]}

    def absorb(self, exported: dict) -> None:
        """Add the counts and gauges of another process's :meth:`export` to these."""
        with self._lock:
            self.counts.update({(name, label): n for name, label, n in exported["counts"]})
            self.dlq.update({(topic, reason): n for topic, reason, n in exported["dlq"]})
            for stage, seconds in exported["stage_seconds"].items():
                self.stage_seconds[stage] += seconds
            self.stage_items.update(exported["stage_items"])
            self.gauges.update({(name, label): v for name, label, v in exported["gauges"]})
            self._absorbed += 1
            tag = self._absorbed  # operator ids are unique within their process only
        by_operator: dict[tuple[int, Any], dict] = {}
        for name, label, source, value in exported["shard_gauges"]:
            by_operator.setdefault((tag, source), {})[(name, label)] = value
        for operator, gauges in by_operator.items():
            combined = self._combine(operator, gauges)  # type: ignore[arg-type]
            with self._lock:
                self.gauges.update(combined)

    def pulse(self) -> dict[str, int | None]:
        """Totals so far for the heartbeat (flows/heartbeat.py), read under the lock
        (worker threads update them meanwhile): input events, lead records published,
        dead letters, and consumer lag summed over partitions (``None``: not reported).

        >>> t = Telemetry(); t.count("in", "a", 5); t.count("published", "leads", 2)
        >>> t.pulse()
        {'events': 5, 'leads': 2, 'dlq': 0, 'lag': None}
        """
        with self._lock:
            lags = [v for (name, _), v in self.gauges.items() if name == "consumer_lag"]
            return {"events": sum(n for (name, _), n in self.counts.items() if name == "in"),
                    "leads": self.counts[("published", "leads")],
                    "dlq": sum(self.dlq.values()),
                    "lag": int(sum(lags)) if lags else None}

    def per_topic(self, name: str) -> dict[str, int]:
        return {label: n for (kind, label), n in sorted(self.counts.items()) if kind == name}

    def summary(self, outputs: dict[str, int], messages: int, seconds: float) -> dict:
        """The run summary: per-topic reconciliation, dead letters by reason, stage counts."""
        telemetry = self  # noqa: F841 - reads as the report it is
        inputs = telemetry.per_topic("in")
        used = telemetry.per_topic("used")
        topics = {}
        for topic in sorted(inputs):
            reasons = {r: n for (t, r), n in sorted(telemetry.dlq.items()) if t == topic}
            dead = sum(reasons.values())
            topics[topic] = {
                "in": inputs[topic],
                "used": used.get(topic, 0),
                "dead_lettered": dead,
                "dlq_by_reason": reasons,
                "reconciled": inputs[topic] == used.get(topic, 0) + dead,
            }
        by_reason: dict[str, int] = {}
        for (_, reason), n in telemetry.dlq.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
        stages = {
            stage: {"items": telemetry.stage_items[stage],
                    "seconds": round(telemetry.stage_seconds[stage], 3)}
            for stage in sorted(telemetry.stage_items)
        }
        return {
            "messages": messages,
            "wall_seconds": round(seconds, 3),
            "events_per_second": round(messages / seconds) if seconds else None,
            "reconciled": all(t["reconciled"] for t in topics.values()),
            "topics": topics,
            "dlq_by_reason": dict(sorted(by_reason.items())),
            "outputs": outputs,
            "leads_by_tier": telemetry.per_topic("leads"),
            "lead_states_emitted": telemetry.per_topic("state"),
            "review_cases": sum(telemetry.per_topic("review_cases").values()),
            "handoffs": sum(telemetry.per_topic("handoffs").values()),
            "quiet_rescores": sum(telemetry.per_topic("lifecycle_quiet").values()),
            "alerts_by_kind": telemetry.per_topic("alerts"),
            "feature_vectors": sum(telemetry.per_topic("feature_vectors").values()),
            "labels_learned": sum(telemetry.per_topic("labels").values()),
            "outcomes_without_score": sum(telemetry.per_topic("outcomes_without_score").values()),
            # Feature vectors with a value outside its documented range: a defect, 0 expected.
            "features_clamped": sum(telemetry.per_topic("features_clamped").values()),
            "autonomy": self.autonomy(),
            "calibration": self.calibration(),
            "stages": stages,
        }
