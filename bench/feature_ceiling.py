"""How much of the oracle's ranking the features can carry: a ceiling analysis (issue 18).

    python bench/quality.py --investors 20000 --days 60 --seed 1 --keep DIR
    python bench/feature_ceiling.py --world DIR/world --run DIR/run

On the points :mod:`replay.quality` evaluates (every score published in the world's last
third of an open lead whose 90-day outcome is known), compare the AUC, as a share of the
oracle's on the same labels, of:

* ``online``: the published probabilities (what ``bench/quality.py`` reports);
* ``offline_published``: a batch logistic regression on the published ``features``,
  cross-fitted (two folds split by investor, so no investor is scored by a fit that saw
  its own labels; fitted on every labelled score of the world, scored on the last
  third) — what a perfectly trained model of the same form reaches on them;
* ``offline_without_fs3``: the same fit without the features fs-3 added (what they carry);
* ``offline_plus_candidates``: the same fit on the published features plus candidate
  features recomputed from the world's raw events, point-in-time (events with an event
  time at or before the score; late deliveries are taken as on time, a small lookahead
  that only flatters the candidates);
* one row per candidate group, added alone, to see which carry the missing information;
* ``behaviour_posterior``: the published features plus an approximate Bayesian posterior
  mean of intent, computed with the generator's own model of behaviour (session rate per
  day with its weekend factor, views per session, dwell on views no campaign led to,
  brochure, reply and meeting odds per session; ``replay/simulate.py``): about the most a
  feature of behaviour can say about intent. Its distance to ``latent`` is what behaviour
  cannot tell, whatever the features;
* ``latent``: the same fit on the world's hidden truth (intent, ESG receptivity x supply,
  ticket fit): a sanity row, close to 1.0 by construction.

The offline fits are the measure of *what the features carry*: a gap between ``online``
and ``offline_published`` is the learner's; between ``offline_published`` and the oracle,
the features'. Nothing here changes the world or its truth.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pyarrow.parquet as pq

from esg_leads.online_models.quality import roc_auc
from esg_leads.replay.feature_ceiling import cross_fitted, folds_by_investor, load_points

DAY = 86_400.0
#: The features fs-3 added (operators/feature_definitions.py).
FS3 = ("seek_dwell", "known_days", "thesis_fit", "risk_fit")
#: Engagement actions counted by the candidate rates.
ACTIONS = ("property_view", "brochure_download", "esg_report_download", "reply",
           "meeting_booked", "call", "email_open", "email_click", "webinar_attended",
           "unsubscribe")


def load_events(world: Path) -> tuple[dict, dict, dict]:
    """Per investor: engagements ``(time, action, campaign, duration, property)`` and
    profiles ``(time, payload)``, by event time; per tenant: property values by time."""
    engagements: dict[str, list] = defaultdict(list)
    profiles: dict[str, list] = defaultdict(list)
    values: dict[str, list] = defaultdict(list)
    seen: set[str] = set()
    for path in sorted(world.glob("segment-*.parquet")):
        table = pq.read_table(path, columns=["topic", "value"])
        for topic, value in zip(table.column("topic").to_pylist(), table.column("value").to_pylist(),
                                strict=True):
            if topic not in ("investor.engagements", "investor.profiles", "esg.property-signals"):
                continue
            try:
                e = orjson.loads(value)
                when = datetime.fromisoformat(e["event_time"]).timestamp()
                key = e["event_id"]
            except Exception:  # noqa: BLE001 - the world's deliberate malformed messages
                continue
            if not isinstance(key, str) or key in seen:
                continue
            seen.add(key)
            try:
                if topic == "investor.engagements":
                    engagements[e["investor_id"]].append(
                        (when, e["action"], e.get("campaign_id"), e.get("duration_s"),
                         e.get("property_id")))
                elif topic == "investor.profiles":
                    profiles[e["investor_id"]].append((when, e))
                else:
                    GREEN[e["property_id"]] = (e.get("epc_band") in ("A+", "A", "B")
                                               or bool(e.get("certifications")))
                    if isinstance(e.get("value_eur"), (int, float)) and e["value_eur"] > 0:
                        values[e["tenant"]].append((when, e["property_id"], float(e["value_eur"])))
            except (KeyError, TypeError, ValueError):
                continue
    for d in (engagements, profiles, values):
        for v in d.values():
            v.sort(key=lambda x: x[:2])
    return engagements, profiles, values


#: property id -> ESG-strong (EPC A+ to B, or certified), as last signalled (load_events).
GREEN: dict[str, bool] = {}


def _log_beta_pdf(x: np.ndarray, a: float, b: float) -> np.ndarray:
    return ((a - 1) * np.log(x) + (b - 1) * np.log1p(-x)
            + math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b))


def behaviour_posterior(points: list[dict], engagements: dict, profiles: dict,
                        start: float) -> np.ndarray:
    """Posterior mean of each point's intent given the behaviour before it, under the
    generator's model (the constants are replay/simulate.py's ``_simulate_day`` and
    ``_session``; intent's prior is replay/world.py's Beta(1.6, 3.5)). Approximate: a day
    with a view no campaign led to is one session; dwell on ESG-strong properties (which
    also reads receptivity) is left out; campaign e-mails are left out."""
    grid = np.linspace(0.005, 0.995, 100)
    prior = _log_beta_pdf(grid, 1.6, 3.5)
    rate, lam = 0.05 + 0.9 * grid, 0.6 + 2.2 * grid
    deep = {"brochure_download": 0.1 + 0.35 * grid, "reply": 0.02 + 0.3 * grid**2,
            "meeting_booked": 0.004 + 0.18 * grid**3}
    weekday0 = datetime.fromtimestamp(start).weekday()
    out = np.zeros(len(points))
    for i, point in enumerate(points):
        t, inv = point["t"], point["investor"]
        events = [e for e in engagements.get(inv, ()) if e[0] <= t]
        profile = [p for p in profiles.get(inv, ()) if p[0] <= t]
        first = min([e[0] for e in events[:1]] + [p[0] for p in profile[:1]] or [t])
        ll = prior.copy()
        days: dict[int, list] = defaultdict(list)
        for e in events:
            if e[1] == "property_view" and e[2] is None:
                days[int((e[0] - start) // DAY)].append(e)
        last = int((t - start) // DAY)
        for d in range(int((first - start) // DAY), last + 1):
            p_session = 1 - np.exp(-rate * (1.0 if (weekday0 + d) % 7 < 5 else 0.25))
            if d in days:
                ll += np.log(p_session) + (len(days[d]) - 1) * np.log(lam) - lam
                for e in days[d]:
                    if e[3] and not GREEN.get(e[4]):
                        z = (math.log(e[3]) - np.log(40 + 80 * grid)) / 0.6
                        ll -= 0.5 * z * z
            elif d < last:  # the day of the score is not over
                ll += np.log1p(-p_session)
        for action, odds in deep.items():
            k = min(len(days), sum(e[1] == action for e in events))
            ll += k * np.log(odds) + (len(days) - k) * np.log1p(-odds)
        w = np.exp(ll - ll.max())
        out[i] = float((w * grid).sum() / w.sum())
    return out


def candidate_features(points: list[dict], engagements: dict, profiles: dict,
                       values: dict) -> dict[str, dict[str, np.ndarray]]:
    """Candidate groups, one row per point, computed from events at or before the point."""
    groups: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    medians: dict[tuple[str, float], float] = {}
    for point in points:
        t, inv = point["t"], point["investor"]
        events = [e for e in engagements.get(inv, ()) if e[0] <= t]
        profile = [p for p in profiles.get(inv, ()) if p[0] <= t]
        first = min([e[0] for e in events[:1]] + [p[0] for p in profile[:1]] or [t])
        exposure = max(0.0, (t - first) / DAY)
        web_hours = {int(e[0] // 3600) for e in events if e[2] is None and e[1] != "email_open"}
        counts = {a: 0 for a in ACTIONS}
        campaign_opens = 0
        dwell = []
        for e in events:
            counts[e[1]] = counts.get(e[1], 0) + 1
            if e[1] == "email_open" and e[2] is not None:
                campaign_opens += 1
            if e[1] == "property_view" and e[2] is None and e[3]:
                dwell.append(math.log(e[3]))
        g = groups["rates"]
        # Intent shows as a rate: sessions per day since the investor was first known.
        g["sessions_per_day"].append((len(web_hours) + 0.5) / (exposure + 2.0))
        g["log_sessions_per_day"].append(math.log((len(web_hours) + 0.5) / (exposure + 2.0)))
        for a in ("property_view", "brochure_download", "reply", "meeting_booked", "call",
                  "email_click", "esg_report_download"):
            g[f"log_{a}_per_day"].append(math.log((counts[a] + 0.5) / (exposure + 2.0)))
        g["log_campaign_opens_per_day"].append(math.log((campaign_opens + 0.5) / (exposure + 2.0)))
        g = groups["depth_ratios"]
        sessions = max(1, len(web_hours))
        g["views_per_session"].append(counts["property_view"] / sessions)
        g["brochures_per_session"].append(counts["brochure_download"] / sessions)
        g["replies_per_session"].append(counts["reply"] / sessions)
        g["meetings_per_session"].append(counts["meeting_booked"] / sessions)
        g["mean_log_dwell"].append(sum(dwell) / len(dwell) if dwell else 4.0)
        g = groups["exposure"]
        g["log_exposure_days"].append(math.log1p(exposure))
        g = groups["ticket_median_fit"]
        ticket = next((p[1].get("ticket_max_eur") for p in reversed(profile)
                       if p[1].get("ticket_max_eur")), None)
        key = (point["tenant"], t // DAY)
        if key not in medians:
            latest: dict[str, float] = {}
            for when, pid, v in values.get(point["tenant"], ()):
                if when > t:
                    break
                latest[pid] = v
            vs = sorted(latest.values())
            medians[key] = vs[len(vs) // 2] if vs else 1.0
        fit = math.exp(-abs(math.log(ticket / medians[key])) / 2) if ticket else 0.0
        g["ticket_median_fit"].append(fit)
        itype = next((p[1].get("investor_type") for p in reversed(profile)), None)
        g["type_known"].append(float(itype is not None))
        g = groups["investor_type"]
        for name in ("private_individual", "family_office", "asset_manager", "pension_fund",
                     "insurer", "reit", "sovereign_wealth"):
            g[f"type_{name}"].append(float(itype == name))
    return {name: {k: np.array(v, dtype=float) for k, v in g.items()} for name, g in groups.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, required=True)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--drop", default="", help="comma-separated published features to leave out")
    args = parser.parse_args()
    points, spec = load_points(args.world, args.run)
    y = np.array([p["label"] for p in points], dtype=float)
    mask = np.array([p["evaluated"] for p in points])
    labels = [bool(v) for v in y[mask]]
    oracle_auc = roc_auc([p["oracle"] for p, m in zip(points, mask, strict=True) if m], labels)
    folds = folds_by_investor(points)

    def ratio(scores) -> float:
        return round(roc_auc([float(s) for s in np.asarray(scores)[mask]], labels) / oracle_auc, 4)

    dropped = set(filter(None, args.drop.split(",")))
    names = sorted(n for n in points[0]["features"] if n not in dropped)
    published = np.array([[p["features"][n] for n in names] for p in points], dtype=float)
    engagements, profiles, values = load_events(args.world)
    candidates = candidate_features(points, engagements, profiles, values)
    evaluated = [p for p, m in zip(points, mask, strict=True) if m]
    result = {"points": len(evaluated), "investors": len({p["investor"] for p in evaluated}),
              "training_points": len(points),
              "positive_rate": round(float(y[mask].mean()), 4), "oracle_auc": round(oracle_auc, 4),
              "online": ratio([p["p"] for p in points]),
              "offline_published": ratio(cross_fitted(published, y, folds))}
    fs3 = [i for i, n in enumerate(names) if n in FS3]
    if fs3:  # the same fit without what fs-3 added: what the features added carry
        kept = [i for i in range(len(names)) if i not in fs3]
        result["offline_without_fs3"] = ratio(cross_fitted(published[:, kept], y, folds))
    every = [published]
    for group, columns in candidates.items():
        block = np.column_stack(list(columns.values()))
        every.append(block)
        result[f"plus_{group}"] = ratio(cross_fitted(np.hstack([published, block]), y, folds))
    result["offline_plus_candidates"] = ratio(cross_fitted(np.hstack(every), y, folds))
    result["candidates_alone"] = ratio(cross_fitted(np.hstack(every[1:]), y, folds))
    start = datetime.fromisoformat(spec["start"]).timestamp()
    posterior = behaviour_posterior(points, engagements, profiles, start)
    result["behaviour_posterior"] = ratio(cross_fitted(np.hstack([published, posterior[:, None]]),
                                                       y, folds))
    tenants = sorted({p["tenant"] for p in points})
    latent = np.array([[p["truth"]["intent"], p["features"].get("ticket_catalog_fit", 0.0),
                        p["features"].get("ticket_known", 0.0)]
                       + [p["truth"]["esg_receptivity"] * (p["tenant"] == t) for t in tenants]
                       + [float(p["tenant"] == t) for t in tenants[1:]] for p in points])
    result["latent"] = ratio(cross_fitted(latent, y, folds))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
