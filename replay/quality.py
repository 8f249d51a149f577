"""Scores against a generated world's truth: the 90-day-horizon protocol, and handoff precision.

The published probability is P(conversion within 90 days of the score's event time).
On a generated world the truth (``truth.parquet``) knows, per investor, when sales
decided and whether the investor converted (qualified), so each score has a label:

* **positive**: the investor converted in ``(t, t + horizon]``;
* **negative**: the investor was decided without converting after ``t`` (the world
  decides each investor once: no later conversion exists), or ``t + horizon`` passed
  inside the world without a conversion;
* **censored** (not counted): neither is known when the world ends — the decision is
  due after the last simulated day. Counting such a score as negative would bias the
  figures low (its conversion may come after the world ends); it is reported as a count.

Only scores of *open* leads count: those taken before the investor's decision (a score
after sales decided predicts nothing sales does not know). Each published score counts
once, as sales would see it. The oracle is the generator's conversion probability of
the same investor at its decision, scored on the same labels: the ceiling a model of
behaviour could reach.

A second, steadier figure needs no labels: the world decides every engaged investor
within 45 days of its first engagement, so an open lead's 90-day outcome is a coin
flip with the generator's probability. ``ece_vs_truth`` compares each bin's mean
score with the mean true probability instead of the observed rate: free of the
coins' noise, and of censoring (a censored score's probability is known).

>>> from datetime import datetime, timedelta, timezone
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> truth = {"a": {"decision_at": t0 + timedelta(days=10), "converted": True},
...          "b": {"decision_at": None, "converted": None}}
>>> horizon_label(t0, truth["a"], timedelta(days=90), t0 + timedelta(days=60))
True
>>> horizon_label(t0 + timedelta(days=11), truth["a"], timedelta(days=90), t0 + timedelta(days=60))
'decided'
>>> horizon_label(t0, truth["b"], timedelta(days=90), t0 + timedelta(days=60)) is None
True
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from esg_leads.online_models.quality import expected_calibration_error, roc_auc

HORIZON = timedelta(days=90)


def horizon_label(t: datetime, truth: dict, horizon: timedelta, end: datetime) -> bool | str | None:
    """The label of a score at ``t``: ``True``/``False``, ``None`` when censored by the
    world's ``end``, ``"decided"`` when the investor was decided at or before ``t``."""
    decided = truth["decision_at"]
    if decided is not None and decided <= t:
        return "decided"
    if decided is not None:
        return bool(truth["converted"]) and decided <= t + horizon
    if t + horizon <= end:
        return False  # the horizon passed inside the world without a conversion
    return None


def _world(world: Path) -> tuple[dict[tuple[str, str], dict], datetime, datetime]:
    """The world's truth by ``(tenant, investor_id)`` (two tenants may share an id), its
    start and its end."""
    truth = {(r["tenant"], r["investor_id"]): r
             for r in pq.read_table(world / "truth.parquet").to_pylist()}
    spec = json.loads((world / "world.json").read_text())["spec"]
    start = datetime.fromisoformat(spec["start"])
    for row in truth.values():  # undecided at the end: decided later, after any drift
        if row["p_convert"] is None:
            row["p_convert"] = row["p_convert_pre_drift" if spec.get("drift_at") is None
                                   else "p_convert_post_drift"]
    return truth, start, start + timedelta(days=spec["days"])


def _ece_vs_truth(scores: list[float], truths: list[float], bins: int = 10) -> float:
    """Like the ECE, with each bin's mean true probability in place of its observed rate."""
    sums, expected = [0.0] * bins, [0.0] * bins
    for p, q in zip(scores, truths, strict=True):
        b = min(bins - 1, int(p * bins))
        sums[b] += p
        expected[b] += q
    return sum(abs(s - e) for s, e in zip(sums, expected, strict=True)) / len(scores)


def evaluate_horizon(world: Path, run: Path, from_fraction: float = 2 / 3,
                     horizon: timedelta = HORIZON) -> dict:
    """ECE and AUC (and the oracle's) of the published scores of the world's last part.

    ``from_fraction``: scores with event time after this share of the world count
    (2/3: the last third, after the models have learned from two thirds of the labels).
    """
    truth, start, end = _world(world)
    cutoff = start + (end - start) * from_fraction
    leads = pq.read_table(run / "leads.parquet",
                          columns=["tenant", "investor_id", "event_time",
                                   "probability"]).to_pylist()
    scores, labels, oracle, ids = [], [], [], set()
    open_scores, open_truth = [], []  # every open lead's score, censored ones too
    skipped: Counter[str] = Counter()
    for lead in leads:
        t = lead["event_time"]
        if t < cutoff:
            continue
        row = truth.get((lead["tenant"], lead["investor_id"]))
        if row is None:
            skipped["unknown_investor"] += 1
            continue
        label = horizon_label(t, row, horizon, end)
        if label != "decided":
            open_scores.append(lead["probability"])
            open_truth.append(row["p_convert"])
        if label is None:
            skipped["censored"] += 1
        elif label == "decided":
            skipped["after_decision"] += 1
        else:
            scores.append(lead["probability"])
            labels.append(label)
            oracle.append(row["p_convert"])
            ids.add((lead["tenant"], lead["investor_id"]))
    if not scores:
        return {"scores_evaluated": 0, "skipped": dict(skipped)}
    auc, oracle_auc = roc_auc(scores, labels), roc_auc(oracle, labels)
    return {
        "horizon_days": horizon.days,
        "from_day": round((cutoff - start).total_seconds() / 86_400, 2),
        "scores_evaluated": len(scores),
        "investors_evaluated": len(ids),
        "skipped": dict(sorted(skipped.items())),
        "positive_rate": round(sum(labels) / len(labels), 4),
        "mean_probability": round(sum(scores) / len(scores), 4),
        "ece": round(expected_calibration_error(scores, labels), 4),
        "oracle_ece": round(expected_calibration_error(oracle, labels), 4),
        "auc": None if auc is None else round(auc, 4),
        "oracle_auc": None if oracle_auc is None else round(oracle_auc, 4),
        "auc_ratio": None if not (auc and oracle_auc) else round(auc / oracle_auc, 4),
        "open_scores": len(open_scores),
        "ece_vs_truth": round(_ece_vs_truth(open_scores, open_truth), 4),
        "mean_true_probability": round(sum(open_truth) / len(open_truth), 4),
    }


def handoff_precision(world: Path, run: Path) -> dict:
    """Of the investors handed to the CRM whose outcome the world decided, the share
    that converted; and the base rate of conversion among all decided investors."""
    truth, _, _ = _world(world)
    path = run / "handoff.parquet"
    handed: set[tuple[str, str]] = set()
    if path.exists():
        table = pq.read_table(path, columns=["tenant", "investor_id"])
        handed = set(zip(table.column("tenant").to_pylist(),
                         table.column("investor_id").to_pylist(), strict=True))
    decided = [r for r in truth.values() if r["decision_at"] is not None]
    known = [i for i in sorted(handed) if truth.get(i, {}).get("decision_at") is not None]
    converted = sum(bool(truth[i]["converted"]) for i in known)
    base = sum(bool(r["converted"]) for r in decided) / len(decided) if decided else None
    precision = converted / len(known) if known else None
    return {
        "handed_off_investors": len(handed),
        "with_known_outcome": len(known),
        "converted": converted,
        "precision": None if precision is None else round(precision, 4),
        "base_rate": None if base is None else round(base, 4),
        "lift": None if not (precision and base) else round(precision / base, 2),
    }


__all__ = ["HORIZON", "evaluate_horizon", "handoff_precision", "horizon_label"]
