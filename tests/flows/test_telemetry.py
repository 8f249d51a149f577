"""Telemetry: shards of one tenant combine into the tenant's review queue and autonomy KPIs."""

from __future__ import annotations

from collections import Counter

from prometheus_client import generate_latest

from esg_leads.connectors.metrics import PrometheusListener
from esg_leads.flows.telemetry import DAY_S, Telemetry


class Shard:
    """An operator as the step adapters see it: counts and gauges to drain."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.gauges: dict = {}

    def report(self, tenant: str, clock: float, first: float, oldest: float | None,
               open_cases: int) -> None:
        self.gauges.update({("event_clock_s", tenant): clock, ("event_first_s", tenant): first,
                            ("review_oldest_open_s", tenant): oldest,
                            ("review_open_cases", tenant): float(open_cases)})


def test_shards_of_a_tenant_combine_into_one_queue() -> None:
    telemetry, listener = Telemetry(), PrometheusListener()
    telemetry.listeners.append(listener)
    a, b = Shard(), Shard()
    a.report("acme", clock=10 * DAY_S, first=DAY_S, oldest=6 * DAY_S, open_cases=2)
    b.report("acme", clock=12 * DAY_S, first=2 * DAY_S, oldest=None, open_cases=0)
    telemetry.drain(a)
    telemetry.drain(b)  # b's later report must not hide a's open cases
    assert telemetry.gauges[("review_open_cases", "acme")] == 2
    assert telemetry.gauges[("review_queue_age_s", "acme")] == 6 * DAY_S  # 12 - 6
    text = generate_latest(listener.registry).decode()
    assert 'esg_leads_review_queue_age_seconds{tenant="acme"} 518400.0' in text
    assert 'esg_leads_review_open_cases{tenant="acme"} 2.0' in text
    # a's case is decided: the queue empties.
    a.report("acme", clock=13 * DAY_S, first=DAY_S, oldest=None, open_cases=0)
    telemetry.drain(a)
    assert telemetry.gauges[("review_queue_age_s", "acme")] == 0.0
    assert telemetry.autonomy()["days"] == 12.0


def test_autonomy_kpis_from_counts() -> None:
    telemetry = Telemetry()
    shard = Shard()
    shard.counts.update({("decisions", "acme"): 90, ("decisions_by_human", "acme"): 9,
                         ("decisions", "beta"): 10, ("review_cases", "acme"): 9,
                         ("investors_scored", "acme"): 1500, ("investors_scored", "beta"): 500,
                         ("handoffs", "beta"): 3})
    shard.report("acme", clock=11 * DAY_S, first=DAY_S, oldest=9 * DAY_S, open_cases=1)
    telemetry.drain(shard)
    kpis = telemetry.autonomy()
    assert kpis["autonomy_rate"] == 0.91
    assert kpis["review_cases_per_1k_investors"] == 4.5
    assert kpis["review_cases_per_1k_investors_per_day"] == 0.45
    assert kpis["review_queue_age_days"] == 2.0 and kpis["open_review_cases"] == 1
    assert kpis["handoffs_by_tenant"] == {"beta": 3}
    assert telemetry.summary({}, 0, 1.0)["autonomy"] == kpis


def test_calibration_in_the_summary_and_as_a_metric() -> None:
    telemetry, listener = Telemetry(), PrometheusListener()
    telemetry.listeners.append(listener)
    shard = Shard()
    shard.counts.update({("calibration_pairs", "acme"): 700, ("calibration_pairs", "beta"): 300})
    shard.gauges.update({("model_ece", "acme"): 0.02125, ("model_ece", "beta"): 0.031})
    telemetry.drain(shard)
    assert telemetry.summary({}, 0, 1.0)["calibration"] == {
        "pairs_matched": 1000, "ece_by_tenant": {"acme": 0.0213, "beta": 0.031}}
    text = generate_latest(listener.registry).decode()
    assert 'esg_leads_model_calibration_error{tenant="acme"} 0.02125' in text
