"""``esg-leads report RUN [--recording REC] [--out report.html]``: one HTML page about a run.

A single self-contained file that works offline: the charts are inline SVG drawn by
matplotlib (text as paths, so no font or network is needed to view it), the styles
are inline, there is no script. The data comes from :mod:`flows.report_data`. Every
text from the outputs is escaped (Jinja2 autoescape); the SVGs are matplotlib's, with
their comments removed (they repeat the labels).
"""

from __future__ import annotations

import io
import re
import shlex
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

from typing import TYPE_CHECKING

from esg_leads.schemas.keys import output_key

if TYPE_CHECKING:  # the CLI builds its parser from this module: drawing libraries load on use
    from markupsafe import Markup

    from esg_leads.flows.report_data import ReportData

#: Colours by role, stable across charts (a reason keeps its colour everywhere).
PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2",
           "#FF9DA6", "#9D755D", "#BAB0AC", "#2F4B7C", "#A05195"]
TIER_COLOURS = {"hot": "#E45756", "warm": "#F58518", "nurture": "#54A24B", "cold": "#4C78A8"}


def _figure(width: float = 7.5, height: float = 3.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _svg(figure) -> Markup:
    """The figure as an inline ``<svg>`` element (no XML prolog, no comments)."""
    import matplotlib
    from markupsafe import Markup

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "esg-leads", "svg.fonttype": "path"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    text = re.sub(r"<!--.*?-->", "", text[text.index("<svg"):], flags=re.S)
    return Markup(text)  # noqa: S704 - matplotlib's own markup, labels drawn as paths


def _dates(axis) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=8)
    axis.xaxis.set_major_locator(locator)
    axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _stacked_by_day(counts: dict[tuple[date, str], int], title: str, ylabel: str,
                    colours: dict[str, str] | None = None) -> Markup:
    days = sorted({day for day, _ in counts})
    series = sorted({name for _, name in counts})
    figure, axis = _figure()
    bottom = [0] * len(days)
    for i, name in enumerate(series):
        heights = [counts.get((day, name), 0) for day in days]
        axis.bar(days, heights, bottom=bottom, width=0.85, label=name,
                 color=(colours or {}).get(name, PALETTE[i % len(PALETTE)]))
        bottom = [b + h for b, h in zip(bottom, heights)]
    axis.set_title(title, loc="left", fontsize=10)
    axis.set_ylabel(ylabel)
    _dates(axis)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _svg(figure)


def _score_by_tier(by_tier: dict[str, list[int]]) -> Markup:
    figure, axis = _figure()
    tiers = [t for t in ("cold", "nurture", "warm", "hot") if t in by_tier]
    tiers += sorted(set(by_tier) - set(tiers))
    axis.hist([by_tier[t] for t in tiers], bins=range(0, 105, 5), stacked=True, label=tiers,
              color=[TIER_COLOURS.get(t, "#BAB0AC") for t in tiers])
    axis.set_title("Published scores by tier", loc="left", fontsize=10)
    axis.set_xlabel("score")
    axis.set_ylabel("scorings")
    axis.legend(fontsize=8, frameon=False)
    return _svg(figure)


def _score_by_tenant(by_tenant: dict[str, list[int]]) -> Markup:
    tenants = sorted(by_tenant)
    figure, axis = _figure(height=max(1.6, 0.5 + 0.45 * len(tenants)))
    axis.boxplot([by_tenant[t] for t in tenants], orientation="horizontal",
                 tick_labels=tenants, showfliers=False, widths=0.6)
    axis.set_xlim(0, 100)
    axis.set_title("Score distribution by tenant (box: quartiles; whiskers: 1.5 IQR)",
                   loc="left", fontsize=10)
    axis.set_xlabel("score")
    return _svg(figure)


def _reliability(data: ReportData) -> Markup:
    calibration = data.calibration
    assert calibration is not None
    figure, axis = _figure(width=4.5, height=4.0)
    axis.plot([0, 1], [0, 1], color="#BAB0AC", linestyle="--", label="perfect calibration")
    predicted, observed, counts = zip(*calibration.bins)
    biggest = max(counts)
    axis.plot(predicted, observed, color=PALETTE[0], marker="o", label="scores")
    axis.scatter(predicted, observed, s=[20 + 180 * c / biggest for c in counts],
                 color=PALETTE[0], alpha=0.35)
    for x, y, n in calibration.bins:  # a bin of a few labels says little: show how few
        axis.annotate(f"n={n:,}", (x, y), textcoords="offset points", xytext=(6, -10),
                      fontsize=7, color="#5b6577")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.set_xlabel("predicted probability (bin mean)")
    axis.set_ylabel("observed qualified rate")
    axis.set_title(f"Reliability — ECE {calibration.ece:.3f} over {calibration.labels:,} labels",
                   loc="left", fontsize=10)
    axis.legend(fontsize=8, frameon=False, loc="upper left")
    return _svg(figure)


def _rolling(data: ReportData) -> Markup:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.6), dpi=100, layout="constrained")
    auc_axis, loss_axis = figure.subplots(2, 1, sharex=True)
    times = [t for t, _, _ in data.rolling]
    auc_axis.plot(times, [a if a is not None else float("nan") for _, a, _ in data.rolling],
                  color=PALETTE[0])
    auc_axis.set_ylabel("ROC AUC")
    auc_axis.set_ylim(0.4, 1.0)
    auc_axis.axhline(0.5, color="#BAB0AC", linestyle=":")
    loss_axis.plot(times, [loss for _, _, loss in data.rolling], color=PALETTE[1])
    loss_axis.set_ylabel("log loss")
    auc_axis.set_title("Rolling quality over the last labels (scored before learned)",
                       loc="left", fontsize=10)
    _dates(loss_axis)
    return _svg(figure)


def _alert_timeline(alerts: list[dict]) -> Markup:
    kinds = sorted({a["kind"] for a in alerts})
    tenants = sorted({a["tenant"] or "(deployment)" for a in alerts})
    figure, axis = _figure(height=max(1.8, 0.8 + 0.4 * len(kinds)))
    for i, tenant in enumerate(tenants):
        mine = [a for a in alerts if (a["tenant"] or "(deployment)") == tenant]
        axis.scatter([datetime.fromisoformat(a["event_time"]) for a in mine],
                     [kinds.index(a["kind"]) for a in mine], label=tenant, marker="D", s=36,
                     color=PALETTE[i % len(PALETTE)])
    axis.set_yticks(range(len(kinds)), kinds)
    axis.set_ylim(-0.6, len(kinds) - 0.4)
    axis.set_title("Alerts over event time (drift, retraining, feed stale, ...)", loc="left",
                   fontsize=10)
    _dates(axis)
    axis.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _svg(figure)


def charts(data: ReportData) -> dict[str, Markup]:
    """The charts the data allows (a section without data shows a note instead)."""
    out: dict[str, Markup] = {}
    if data.dlq_by_day:
        out["dlq"] = _stacked_by_day(data.dlq_by_day, "Dead letters per day by reason "
                                     "(message timestamp)", "dead letters")
    if data.scores_by_tier:
        out["score_tier"] = _score_by_tier(data.scores_by_tier)
        out["score_tenant"] = _score_by_tenant(data.scores_by_tenant)
    if data.calibration is not None:
        out["reliability"] = _reliability(data)
    if data.rolling:
        out["rolling"] = _rolling(data)
    if data.alerts:
        out["alerts"] = _alert_timeline(data.alerts)
    if data.review_by_day:
        out["review"] = _stacked_by_day(data.review_by_day, "Review cases per day by reason",
                                        "cases (by reason)")
    if data.handoffs_by_day:
        out["handoffs"] = _stacked_by_day(data.handoffs_by_day, "CRM handoffs per day by "
                                          "tenant", "handoffs")
    return out


def explain_command(data: ReportData, record: dict) -> str:
    """The command line that prints this lead's whole story (the tenant's lead: another
    tenant may have the same investor id)."""
    parts = ["esg-leads", "explain", "--out", str(data.run)]
    if data.recording is not None:
        parts += ["--recording", str(data.recording)]
    return shlex.join([*parts, output_key(record["tenant"], record["investor_id"])])


def _reasons(record: dict) -> dict[str, list[str]]:
    explanation = record["explanation"]
    return {"positive": [f"{c['feature']} ({c['contribution']:+.2f})"
                         for c in explanation["top_positive"]],
            "negative": [f"{c['feature']} ({c['contribution']:+.2f})"
                         for c in explanation["top_negative"]],
            "prior": list(explanation.get("prior_reasons") or [])}


def render(data: ReportData, generated: datetime | None = None) -> str:
    from jinja2 import Environment, PackageLoader, select_autoescape

    environment = Environment(loader=PackageLoader(__package__, "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True),
                              trim_blocks=True, lstrip_blocks=True)
    leads = [{"record": r, "reasons": _reasons(r), "explain": explain_command(data, r)}
             for r in data.top_leads]
    by_kind: dict[str, int] = defaultdict(int)
    for alert in data.alerts:
        by_kind[alert["kind"]] += 1
    autonomy = data.summary.get("autonomy", {})
    tenants = sorted({*autonomy.get("review_cases_by_tenant", {}),
                      *autonomy.get("handoffs_by_tenant", {})})
    return environment.get_template("report.html.j2").render(
        data=data, summary=data.summary, charts=charts(data), leads=leads,
        alerts_by_kind=dict(sorted(by_kind.items())), tenants=tenants,
        generated=(generated or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC"))


def write_report(run: Path, out: Path | None = None, recording: Path | None = None) -> Path:
    """Write the report of ``run`` to ``out`` (default ``RUN/report.html``; a directory:
    ``report.html`` in it); returns its path."""
    from esg_leads.flows.report_data import load

    data = load(run, recording)
    out = out or run / "report.html"
    if out.is_dir():  # --out DIR: the page goes in it
        out = out / "report.html"
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(render(data), encoding="utf-8")
        partial.replace(out)  # a reader never sees half a page
    except OSError:
        partial.unlink(missing_ok=True)
        raise
    return out
