"""Prometheus metrics: the run's telemetry, served on ``/metrics``.

Label values are bounded: topics, DLQ reasons, stages, tiers, states, alert kinds
and tenants (a configured list) — never investor or event ids. With several
processes (``--processes``), each serves its own port (``metrics.port + process
index``); Prometheus sums them (``sum by (topic) (...)``). Threads of one process
share one registry.
"""

from __future__ import annotations

import gc
from collections import Counter

from prometheus_client import (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR,
                               CollectorRegistry, Gauge, Histogram, start_http_server)
from prometheus_client import Counter as PromCounter

#: Telemetry count name -> (metric name, label name, help).
COUNTS: dict[str, tuple[str, str, str]] = {
    "in": ("esg_leads_input_messages", "topic", "Messages read from input topics"),
    "used": ("esg_leads_used_messages", "topic", "Input messages the flow used"),
    "leads": ("esg_leads_scorings", "tier", "Leads scored, by tier"),
    "state": ("esg_leads_published_leads", "state", "Lead records published, by lead state"),
    "alerts": ("esg_leads_alerts", "kind", "Alerts raised (drift, retraining, promotion)"),
    "labels": ("esg_leads_labels", "tenant", "CRM labels joined to point-in-time features"),
    "feature_vectors": ("esg_leads_feature_vectors", "tenant", "Feature vectors from closed windows"),
    "rescores": ("esg_leads_rescores", "tenant",
                 "Re-scores after an investor's silence, or on a profile that completes a "
                 "scored investor's compliance facts"),
    "review_cases": ("esg_leads_review_cases", "tenant", "Review cases opened"),
    "handoffs": ("esg_leads_handoffs", "tenant", "Leads handed off to the CRM"),
    "decisions": ("esg_leads_decisions", "tenant",
                  "Lead routing decisions (state changes the flow decided)"),
    "decisions_by_human": ("esg_leads_decisions_by_human", "tenant",
                           "Routing decisions handed to a person (review cases opened); "
                           "autonomy rate = 1 - this / esg_leads_decisions"),
    "review_decisions": ("esg_leads_review_decisions", "tenant",
                         "Reviewers' decisions applied to open cases"),
    "info_requests": ("esg_leads_info_requests", "tenant",
                      "Leads moved to needs_info: profile facts asked for, not a person"),
    "info_received": ("esg_leads_info_received", "tenant",
                      "Leads in needs_info whose missing profile facts arrived"),
    "investors_scored": ("esg_leads_investors_scored", "tenant", "Investors scored a first time"),
    "lifecycle_quiet": ("esg_leads_unpublished_rescores", "tenant",
                        "Scores not published: no transition, no material change"),
    "outcomes_without_score": ("esg_leads_outcomes_without_score", "tenant",
                               "Labels that found no earlier score to learn from"),
    "published": ("esg_leads_output_messages", "output", "Records written to outputs"),
    "features_clamped": ("esg_leads_features_clamped", "tenant",
                         "Feature vectors with a value outside its documented range (a defect)"),
    "shadow_scores": ("esg_leads_shadow_scores", "tenant",
                      "Feature vectors a challenger scored in shadow (leads.shadow)"),
    "canary_leads": ("esg_leads_canary_leads", "tenant",
                     "Leads decided by the challenger (the canary share)"),
    "model_commands": ("esg_leads_model_commands", "action",
                       "Signed ops.control commands obeyed, by action"),
}
#: Telemetry gauge name -> (metric name, label name, help).
GAUGES: dict[str, tuple[str, str, str]] = {
    "model_log_loss": ("esg_leads_model_log_loss", "tenant", "Rolling prequential log loss"),
    "model_auc": ("esg_leads_model_auc", "tenant", "Rolling prequential ROC AUC"),
    "model_ece": ("esg_leads_model_calibration_error", "tenant",
                  "Rolling expected calibration error (10 bins) of the published horizon "
                  "probability, each score against its outcome once known"),
    "consumer_lag": ("esg_leads_consumer_lag", "partition", "Messages behind the partition end"),
    "review_open_cases": ("esg_leads_review_open_cases", "tenant", "Review cases awaiting a person"),
    "review_queue_age_s": ("esg_leads_review_queue_age_seconds", "tenant",
                           "Age of the oldest open review case, in event time"),
    "challenger_loss_gain": ("esg_leads_challenger_log_loss_gain", "tenant",
                             "Champion minus challenger log loss per label, latest "
                             "models.window_labels labels (positive: the challenger is better)"),
}
#: Observation name -> (metric name, label name, help, buckets).
HISTOGRAMS: dict[str, tuple[str, str, str, tuple[float, ...]]] = {
    "lead_latency": ("esg_leads_lead_latency_seconds", "since",
                     "From an input's ingest (or event) time to its lead being published",
                     (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900,
                      3600, 7200, 86400)),
    "esg_data_age": ("esg_leads_esg_data_age_seconds", "tenant",
                     "Age of the ESG data behind each published lead (Prometheus base unit)",
                     tuple(d * 86_400 for d in (7, 30, 90, 180, 365, 730, 1460, 2920))),
}


class PrometheusListener:
    """Turns telemetry updates into Prometheus metrics on its own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # The process' CPU, memory, file descriptors and GC, as every Python exporter has
        # them (process_*, python_gc_*, python_info): the dashboard's process panels.
        for collector in (PROCESS_COLLECTOR, GC_COLLECTOR, PLATFORM_COLLECTOR):
            self.registry.register(collector)
        self._counters = {
            name: PromCounter(metric, text, [label], registry=self.registry)
            for name, (metric, label, text) in COUNTS.items()
        }
        self._gauges = {
            name: Gauge(metric, text, [label], registry=self.registry)
            for name, (metric, label, text) in GAUGES.items()
        }
        self._histograms = {
            name: Histogram(metric, text, [label], buckets=buckets, registry=self.registry)
            for name, (metric, label, text, buckets) in HISTOGRAMS.items()
        }
        self._dead = PromCounter("esg_leads_dead_letters", "Inputs sent to the dead-letter output",
                                 ["topic", "reason"], registry=self.registry)
        self._stage = Histogram(
            "esg_leads_stage_batch_seconds", "Time an agent/stage spends on one batch",
            ["stage"], buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
            registry=self.registry)
        self._stage_items = PromCounter("esg_leads_stage_items", "Items handled per stage",
                                        ["stage"], registry=self.registry)
        self._children: dict[tuple, object] = {}
        # Objects the streaming GC policy froze (flows.steps.streaming_gc): it should
        # level off with the flow's state; steady growth would be leaked cycles.
        Gauge("esg_leads_gc_frozen_objects", "Objects in CPython's permanent GC generation",
              registry=self.registry).set_function(gc.get_freeze_count)

    def _child(self, metric, *labels: str):  # noqa: ANN001, ANN202 - prometheus types
        """``metric.labels(*labels)``, cached: the flow updates metrics after every
        batch of every stage, and ``labels()`` validates and locks on each call.
        Label values are bounded (see the module docstring), and so is the cache."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def on_counts(self, counts: Counter) -> None:
        for (name, label), n in counts.items():
            counter = self._counters.get(name)
            if counter is not None and n > 0:
                self._child(counter, label).inc(n)

    def on_gauges(self, gauges: dict) -> None:
        for (name, label), value in gauges.items():
            gauge = self._gauges.get(name)
            if gauge is not None:
                self._child(gauge, label).set(value)

    def on_observations(self, samples: list) -> None:
        for name, label, value in samples:
            histogram = self._histograms.get(name)
            if histogram is not None:
                self._child(histogram, label).observe(value)

    def on_stage(self, stage: str, items: int, seconds: float) -> None:
        self._child(self._stage, stage).observe(seconds)
        self._child(self._stage_items, stage).inc(items)

    def on_dead_letters(self, records: list[dict]) -> None:
        for record in records:
            self._child(self._dead, record["topic"], record["reason"]).inc()


def serve(listener: PrometheusListener, port: int, host: str = "127.0.0.1") -> int:
    """Serve ``/metrics`` on ``host:port`` (0 picks a free port); returns the port."""
    server, _thread = start_http_server(port, addr=host, registry=listener.registry)
    return server.server_address[1]
