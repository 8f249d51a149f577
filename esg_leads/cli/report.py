"""``esg-leads report RUN [--recording REC] [--out FILE]``: the command around
:func:`esg_leads.flows.report.write_report`."""

from __future__ import annotations

import argparse
from pathlib import Path

from esg_leads.cli.args import UsageError


def cmd_report(args: argparse.Namespace) -> int:
    from esg_leads.flows.report import write_report
    from esg_leads.flows.report_data import NotARun

    if args.recording is not None and not args.recording.is_dir():
        raise UsageError(f"no recording at {args.recording}")
    try:
        path = write_report(args.run, args.out, args.recording)
    except NotARun as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write the report: {error}") from None
    print(path)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write a run's HTML report (one offline file)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Write one self-contained HTML page about a run:\n"
                       "reconciliation, dead letters, scores, calibration, alerts, review,\n"
                       "handoffs and top leads.\n\n"
                       "example:\n  esg-leads report .demo/run --recording .demo/world")
    p.add_argument("run", type=Path, help="a replay's output directory")
    p.add_argument("--recording", type=Path, default=None,
                   help="the recording it ran on: its CRM outcomes are the labels for "
                        "calibration and rolling AUC / log loss")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the page (default: RUN/report.html)")
    p.set_defaults(func=cmd_report)
