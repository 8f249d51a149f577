"""What the published features carry: cross-fitted offline fits against a world's truth.

The online model learns one label at a time; whether a ranking gap is the learner's or
the features' is answered by fitting the same form (an L2-penalised logistic regression)
offline on the features every published score carried, cross-fitted in two folds split
by investor (no investor is scored by a fit that saw its own label), and comparing its
AUC with the oracle's on the points :func:`replay.quality.evaluate_horizon` counts.
``bench/feature_ceiling.py`` adds candidate features from the raw events to the same fit.

>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> X = rng.normal(size=(4000, 2))
>>> y = (rng.random(4000) < 1 / (1 + np.exp(-(0.5 + 2 * X[:, 0] - X[:, 1])))).astype(float)
>>> bool(np.allclose(fit_logistic(X, y, l2=0.0), [0.5, 2.0, -1.0], atol=0.15))
True
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from esg_leads.online_models.quality import roc_auc
from esg_leads.replay.quality import HORIZON, horizon_label


def load_points(world: Path, run: Path, from_fraction: float = 2 / 3) -> tuple[list[dict], dict]:
    """The evaluated points of ``replay.quality.evaluate_horizon``, with their features."""
    truth = {(r["tenant"], r["investor_id"]): r  # two tenants may share an investor id
             for r in pq.read_table(world / "truth.parquet").to_pylist()}
    spec = json.loads((world / "world.json").read_text())["spec"]
    start = datetime.fromisoformat(spec["start"])
    end = start + timedelta(days=spec["days"])
    cutoff = start + (end - start) * from_fraction
    for row in truth.values():
        if row["p_convert"] is None:
            row["p_convert"] = row["p_convert_pre_drift" if spec.get("drift_at") is None
                                   else "p_convert_post_drift"]
    table = pq.read_table(run / "leads.parquet", columns=[
        "tenant", "investor_id", "event_time", "probability", "record"])
    features_column = table.column("record").combine_chunks().field("features").to_pylist()
    leads = table.drop(["record"]).to_pylist()
    for lead, features in zip(leads, features_column, strict=True):
        lead["features"] = features
    points = []
    for lead in leads:
        t = lead["event_time"]
        row = truth.get((lead["tenant"], lead["investor_id"]))
        if row is None:
            continue
        label = horizon_label(t, row, HORIZON, end)
        if label is None or label == "decided":
            continue
        features = lead["features"]
        if not isinstance(features, dict):  # a parquet map reads as (key, value) pairs
            features = dict(features)
        points.append({"investor": lead["investor_id"], "tenant": lead["tenant"],
                       "t": t.timestamp(), "p": lead["probability"], "features": features,
                       "label": label, "oracle": row["p_convert"], "truth": row,
                       "evaluated": t >= cutoff})
    return points, spec


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 30) -> np.ndarray:
    """L2-penalised logistic regression by Newton's method (intercept unpenalised)."""
    A = np.hstack([np.ones((len(X), 1)), X])
    w = np.zeros(A.shape[1])
    penalty = np.full(A.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-np.clip(A @ w, -30, 30)))
        gradient = A.T @ (p - y) + penalty * w
        hessian = (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return w


def cross_fitted(X: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold logits: each fold scored by a fit on the others (standardised on them).

    Fits use every labelled point of the other fold's investors, the world's first two
    thirds included, as the online model learns from the whole world."""
    out = np.zeros(len(y))
    for k in np.unique(folds):
        train, test = folds != k, folds == k
        mean, std = X[train].mean(axis=0), X[train].std(axis=0)
        std[std == 0] = 1.0
        w = fit_logistic((X[train] - mean) / std, y[train])
        out[test] = w[0] + ((X[test] - mean) / std) @ w[1:]
    return out


def folds_by_investor(points: list[dict]) -> np.ndarray:
    """Fold 0 or 1 per point, by a stable hash of its investor (the same in every process)."""
    return np.array([zlib.crc32(p["investor"].encode()) % 2 for p in points])


def feature_auc_ratio(points: list[dict], names: Iterable[str]) -> float:
    """AUC over the evaluated points of the cross-fitted fit on ``names`` (published
    features), as a share of the oracle's AUC on the same points."""
    names = tuple(names)
    y = np.array([p["label"] for p in points], dtype=float)
    mask = np.array([p["evaluated"] for p in points])
    X = np.array([[p["features"][n] for n in names] for p in points], dtype=float)
    scores = cross_fitted(X, y, folds_by_investor(points))[mask]
    labels = [bool(v) for v in y[mask]]
    oracle = roc_auc([p["oracle"] for p, m in zip(points, mask, strict=True) if m], labels)
    return roc_auc([float(s) for s in scores], labels) / oracle


__all__ = ["cross_fitted", "feature_auc_ratio", "fit_logistic", "folds_by_investor", "load_points"]
