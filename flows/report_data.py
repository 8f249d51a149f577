"""What ``esg-leads report`` shows, read from a run's output directory (no drawing here).

Everything comes from the files a replay writes (``summary.json``, ``leads.parquet``,
``dlq.parquet``, ``alerts.parquet``, ``review.parquet``, ``handoff.parquet``) and,
with ``--recording``, from the recording's ``crm.outcomes``: the labels. A label is
paired with the investor's last score *published before* the outcome — what sales
saw when it decided, scored before the model learned from that label — so the
calibration and the rolling AUC / log loss are honest out-of-sample figures.

Nothing personal is read beyond what the outputs carry (pseudonymous investor ids);
no contact data is in them.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from esg_leads.connectors.parquet_sink import read_records, records_of
from esg_leads.online_models.quality import RollingQuality
from esg_leads.operators.investor_state import LABELS
from esg_leads.schemas.codec import DecodeFailure, decode_event

#: Equal-width probability bins of the reliability diagram (and of its ECE).
BINS = 10
#: Labels per point of the rolling AUC / log loss.
ROLLING_WINDOW = 200


class NotARun(Exception):
    """The directory holds no run outputs (a typo, or a recording passed as the run)."""


@dataclass
class Calibration:
    """Reliability diagram: per bin, mean predicted probability, observed rate, count."""

    bins: list[tuple[float, float, int]]
    ece: float
    labels: int
    positives: int


@dataclass
class ReportData:
    run: Path
    recording: Path | None
    summary: dict
    #: (day, reason) -> dead letters, by the message's own timestamp; ``undated`` letters aside.
    dlq_by_day: dict[tuple[date, str], int]
    dlq_undated: int
    #: score values per (tier) and per (tenant), for the distributions
    scores_by_tier: dict[str, list[int]]
    scores_by_tenant: dict[str, list[int]]
    alerts: list[dict]
    review_by_day: dict[tuple[date, str], int]  #: (day, reason code) -> cases
    handoffs_by_day: dict[tuple[date, str], int]  #: (day, tenant) -> handoffs
    handoffs: list[dict]  #: the latest handoffs (newest first), for the table
    top_leads: list[dict]
    #: (outcome time, probability, label) pairs, in outcome-time order (needs labels)
    pairs: list[tuple[datetime, float, bool]] = field(default_factory=list)
    calibration: Calibration | None = None
    rolling: list[tuple[datetime, float | None, float]] = field(default_factory=list)


def _table(path: Path, columns: list[str] | None = None) -> pa.Table | None:
    return pq.read_table(path, columns=columns) if path.exists() else None


def _day(value: datetime) -> date:
    return value.astimezone(timezone.utc).date()


def latest_leads(path: Path, limit: int) -> list[dict]:
    """Each lead's latest scored record in ``path`` (a ``leads.parquet``), best first.

    A lead is a tenant's investor: two tenants' ``inv-1`` are two leads, each with its
    own latest score. Ranked on the flat columns; only the ``limit`` records shown are
    read whole.
    """
    table = pq.read_table(path, columns=["tenant", "investor_id", "event_time", "probability",
                                         "idempotency_key"])
    table = table.sort_by([("tenant", "ascending"), ("investor_id", "ascending"),
                           ("event_time", "descending")])
    leads = list(zip(table.column("tenant").to_pylist(), table.column("investor_id").to_pylist()))
    keep = [i for i, lead in enumerate(leads) if i == 0 or leads[i - 1] != lead]
    latest = table.take(keep)
    order = pc.sort_indices(latest, sort_keys=[("probability", "descending"),
                                               ("investor_id", "ascending"),
                                               ("tenant", "ascending")])
    keys = latest.take(order[:limit]).column("idempotency_key").to_pylist()
    if not keys:
        return []
    found = {r["idempotency_key"]: r
             for r in read_records(path, filters=[("idempotency_key", "in", keys)])}
    return [found[k] for k in keys]


def outcome_labels(recording: Path) -> list[tuple[str, str, datetime, bool]]:
    """``(tenant, investor, event time, label)`` of the recording's valid CRM outcomes.

    Decoded as the flow decodes them: a message the flow dead-letters is no label.
    """
    from esg_leads.connectors.recording import RecordingReader

    labels = []
    for message in RecordingReader(recording):
        if message.topic != "crm.outcomes":
            continue
        try:
            outcome = decode_event(message.topic, message.value)
        except DecodeFailure:
            continue
        label = LABELS.get(outcome.kind.value)  # type: ignore[attr-defined]
        if label is not None:
            labels.append((outcome.tenant, outcome.investor_id,  # type: ignore[attr-defined]
                           outcome.event_time, label))  # type: ignore[attr-defined]
    return labels


def pair_labels(leads: pa.Table, labels: list[tuple[str, str, datetime, bool]]
                ) -> list[tuple[datetime, float, bool]]:
    """Each label with the investor's last score published at or before its time.

    >>> t = lambda h: datetime(2026, 1, 1, h, tzinfo=timezone.utc)
    >>> leads = pa.table({"tenant": ["a"] * 2, "investor_id": ["i1", "i1"],
    ...                   "event_time": [t(1), t(5)], "probability": [0.2, 0.7]})
    >>> [(p, y) for _, p, y in pair_labels(leads, [("a", "i1", t(3), True), ("a", "i1", t(0), False),
    ...                                           ("a", "i1", t(6), False)])]
    [(0.2, True), (0.7, False)]
    """
    history: dict[tuple[str, str], tuple[list[datetime], list[float]]] = {}
    ordered = leads.select(["tenant", "investor_id", "event_time", "probability"]).sort_by(
        [("event_time", "ascending")])
    for tenant, investor, when, p in zip(*(ordered.column(i).to_pylist() for i in range(4))):
        times, probs = history.setdefault((tenant, investor), ([], []))
        times.append(when)
        probs.append(p)
    pairs = []
    for tenant, investor, when, label in labels:
        times, probs = history.get((tenant, investor), ([], []))
        i = bisect_right(times, when)
        if i:
            pairs.append((when, probs[i - 1], label))
    pairs.sort(key=lambda pair: pair[0])
    return pairs


def calibration(pairs: list[tuple[datetime, float, bool]], bins: int = BINS) -> Calibration:
    """Reliability bins and expected calibration error (equal-width bins).

    >>> when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> c = calibration([(when, 0.15, False), (when, 0.15, True), (when, 0.95, True)])
    >>> c.bins, round(c.ece, 4)
    ([(0.15, 0.5, 2), (0.95, 1.0, 1)], 0.25)
    """
    grouped: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for _, p, y in pairs:
        grouped[min(int(p * bins), bins - 1)].append((p, y))
    rows, ece = [], 0.0
    for b in sorted(grouped):
        members = grouped[b]
        confidence = sum(p for p, _ in members) / len(members)
        observed = sum(y for _, y in members) / len(members)
        rows.append((round(confidence, 6), round(observed, 6), len(members)))
        ece += len(members) / len(pairs) * abs(confidence - observed)
    return Calibration(rows, ece, len(pairs), sum(y for _, _, y in pairs))


def rolling_quality(pairs: list[tuple[datetime, float, bool]], window: int = ROLLING_WINDOW,
                    points: int = 120) -> list[tuple[datetime, float | None, float]]:
    """``(time, AUC, log loss)`` over the last ``window`` labels, at up to ``points`` times."""
    quality = RollingQuality(window)
    step = max(1, len(pairs) // points)
    out = []
    for i, (when, p, y) in enumerate(pairs, 1):
        quality.add(p, y)
        if i >= min(window, 30) and (i % step == 0 or i == len(pairs)):
            out.append((when, quality.auc(), quality.log_loss()))
    return out


def load(run: Path, recording: Path | None = None, top: int = 10) -> ReportData:
    """Read a run's outputs (and the recording's labels) for the report."""
    summary_path = run / "summary.json"
    if not summary_path.is_file():
        raise NotARun(f"{run} is not a run's output directory (no summary.json; "
                      "write one with esg-leads replay RECORDING --out DIR)")
    summary = json.loads(summary_path.read_text())

    dlq_by_day: Counter = Counter()
    undated = 0
    dlq = _table(run / "dlq.parquet", ["reason", "record"])
    if dlq is not None:
        stamps = pc.struct_field(dlq.column("record"), "timestamp").to_pylist()
        for reason, stamp in zip(dlq.column("reason").to_pylist(), stamps):
            if stamp is None:
                undated += 1
            else:
                dlq_by_day[(_day(stamp), reason)] += 1

    leads = _table(run / "leads.parquet", ["tenant", "investor_id", "event_time", "probability",
                                           "score", "tier"])
    by_tier: dict[str, list[int]] = defaultdict(list)
    by_tenant: dict[str, list[int]] = defaultdict(list)
    top_leads: list[dict] = []
    if leads is not None and leads.num_rows:
        for tier, tenant, score in zip(*(leads.column(c).to_pylist()
                                         for c in ("tier", "tenant", "score"))):
            by_tier[tier].append(score)
            by_tenant[tenant].append(score)
        top_leads = latest_leads(run / "leads.parquet", top)

    alerts = records_of(_table(run / "alerts.parquet")) if (run / "alerts.parquet").exists() else []
    alerts.sort(key=lambda a: (a["event_time"], a["idempotency_key"]))

    review_by_day: Counter = Counter()
    review = _table(run / "review.parquet")
    for case in records_of(review) if review is not None else []:
        day = _day(datetime.fromisoformat(case["event_time"]))
        for reason in case["reasons"]:
            review_by_day[(day, reason["code"])] += 1

    handoff = _table(run / "handoff.parquet")
    handoffs = records_of(handoff) if handoff is not None else []
    handoffs_by_day = Counter((_day(datetime.fromisoformat(h["event_time"])), h["tenant"])
                              for h in handoffs)
    handoffs.sort(key=lambda h: (h["event_time"], h["idempotency_key"]), reverse=True)

    data = ReportData(run, recording, summary, dict(dlq_by_day), undated, dict(by_tier),
                      dict(by_tenant), alerts, dict(review_by_day), dict(handoffs_by_day),
                      handoffs[:20], top_leads)
    if recording is not None and leads is not None:
        data.pairs = pair_labels(leads, outcome_labels(recording))
        if data.pairs:
            data.calibration = calibration(data.pairs)
            data.rolling = rolling_quality(data.pairs)
    return data

