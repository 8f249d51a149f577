"""``esg-leads train`` and ``esg-leads models list|show|diff``; ``--model`` for replay/run.

:func:`add_commands` adds the sub-commands to the CLI's parser, and the warm-start
flags (``--model [TENANT=]VERSION``, ``--registry DIR``) to ``replay`` and ``run``;
:func:`model_overrides` turns those flags into settings (``registry.*``). Registry
problems (unknown version, corrupt artifact, another feature set) end the command
with one line and exit code 2, like any usage error.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path


def model_overrides(args: argparse.Namespace) -> dict:
    """Settings overrides of ``--model`` / ``--registry`` (empty when not given)."""
    registry: dict = {}
    if getattr(args, "registry", None) is not None:
        registry["directory"] = str(args.registry)
    models = {}
    for value in getattr(args, "model", None) or ():
        tenant, _, version = value.rpartition("=")
        models[tenant or "*"] = version
    if models:
        registry["models"] = models
    return {"registry": registry} if registry else {}


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        from esg_leads.cli.args import UsageError
        from esg_leads.online_models.model_store import RegistryError

        from esg_leads.flows.review_decision import DecisionError

        try:
            return func(args)
        except (RegistryError, DecisionError) as error:
            raise UsageError(str(error)) from None

    return call


def _settings(config: Path | None, recording: Path | None, overrides: dict):
    from esg_leads.cli.args import effective_settings as load

    if config is None and recording is not None and (recording / "config.toml").exists():
        config = recording / "config.toml"
    return load(config, overrides)


def _registry(args: argparse.Namespace):
    from esg_leads.online_models.model_store import ModelStore, registry_directory

    from esg_leads.cli.args import UsageError

    directory = Path(args.registry if args.registry is not None
                     else registry_directory(_settings(args.config, None, {})))
    if not directory.is_dir():  # reading commands: never create an empty registry
        raise UsageError(f"no model registry at {directory} (make one with esg-leads train "
                         "RECORDING --out DIR)")
    return ModelStore(directory)


def _console():
    from rich.console import Console

    # Piped output is not cut to 80 columns: a table is read whole or grepped.
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size().columns, 200)
    return Console(width=width)


def _num(value: object, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


# ------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    from esg_leads.cli.args import UsageError, open_recording
    from esg_leads.replay.train import train

    open_recording(args.recording)  # a missing, empty or junk directory: one line, exit 2
    until = None
    if args.until is not None:
        try:
            until = datetime.fromisoformat(args.until)
        except ValueError:
            raise UsageError(f"--until {args.until!r} is not an ISO 8601 time "
                             "(e.g. 2026-02-01T00:00:00Z)") from None
        if until.tzinfo is None:
            until = until.replace(tzinfo=timezone.utc)
    # Parent models (--model) are looked up in the registry being written to.
    overrides = model_overrides(argparse.Namespace(model=args.model, registry=args.out))
    settings = _settings(args.config, args.recording, overrides)
    trained = train(args.recording, args.out, settings, until=until)
    from rich.table import Table

    table = Table(title=f"registered in {args.out}")
    for column in ("tenant", "version", "labels", "log loss (last 500)"):
        table.add_column(column)
    for t in trained:
        table.add_row(t.tenant, t.version or "(no labels: nothing to train)", str(t.labels),
                      _num(t.log_loss))
    _console().print(table)
    return 0 if any(t.version for t in trained) else 1


# ----------------------------------------------------------------------- models


def cmd_list(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _registry(args)
    entries = [e for e in store.entries() if args.tenant is None or e.get("tenant") == args.tenant]
    table = Table(title=f"model versions in {store.directory}")
    for column in ("version", "tenant", "feature set", "created", "labels", "positives",
                   "log loss", "AUC", "labels until", "parent", "created by"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(e["version"], str(e.get("tenant")), str(e.get("feature_set_version")),
                      str(e.get("created_at", ""))[:19], _num(e.get("labels")),
                      _num(e.get("positives")), _num(e.get("log_loss")), _num(e.get("auc")),
                      str(e.get("window_end") or "-")[:19], e.get("parent") or "-",
                      str(e.get("created_by")))
    _console().print(table)
    if not entries:
        print("no model versions", file=sys.stderr)
    return 0


def _mean_weights(artifact) -> dict[str, float]:
    members = artifact.state.model.members
    totals: dict[str, float] = {}
    for member in members:
        for name, value in zip(member.weights.names, member.weights.values, strict=True):
            totals[name] = totals.get(name, 0.0) + value / len(members)
    return totals


def _card_rows(artifact) -> list[tuple[str, str]]:
    card, state = artifact.card, artifact.state
    rows = [("tenant", card.tenant), ("model", card.name),
            ("feature set", card.feature_set_version),
            ("features", str(len(card.feature_names))),
            ("labels", f"{card.labels} ({card.positives} positive)"),
            ("labels from", str(card.window_start or "-")),
            ("labels until", str(card.window_end or "-")),
            ("input cut-off", str(card.until or "whole recording")),
            ("parent", card.parent or "-"), ("created by", card.created_by),
            ("source", card.source),
            ("ensemble", f"{state.model.n_models} members, lr {state.model.lr}, "
                         f"l2 {state.model.l2}, seed {state.model.seed}"),
            ("calibration", f"{state.calibrator.bins} bins, {state.calibrator.n_learned} labels")]
    rows += [(f"validation: {k}", _num(v)) for k, v in sorted(card.validation.items())]
    return rows


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _registry(args)
    version = store.resolve(args.version)
    artifact = store.load(version)
    entry = store.entry(version) or {}
    console = _console()
    table = Table(title=f"{version} (checksum verified)", show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    table.add_row("registered", str(entry.get("created_at", "- (not in the index)")))
    for field, value in _card_rows(artifact):
        table.add_row(field, value)
    console.print(table)
    weights = sorted(_mean_weights(artifact).items(), key=lambda kv: -abs(kv[1]))
    table = Table(title=f"largest mean weights (standardised features), top {args.top}")
    table.add_column("feature")
    table.add_column("weight", justify="right")
    for name, value in weights[:args.top]:
        table.add_row(name, f"{value:+.4f}")
    console.print(table)
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _registry(args)
    a, b = store.resolve(args.version_a), store.resolve(args.version_b)
    art_a, art_b = store.load(a), store.load(b)
    console = _console()
    table = Table(title=f"{a} vs {b}")
    for column in ("field", a, b):
        table.add_column(column, overflow="fold")
    for (field, va), (_, vb) in zip(_card_rows(art_a), _card_rows(art_b), strict=False):
        mark = "" if va == vb else "[bold]"
        table.add_row(f"{mark}{field}", va, vb)
    console.print(table)
    wa, wb = _mean_weights(art_a), _mean_weights(art_b)
    names = sorted(set(wa) | set(wb), key=lambda n: -abs(wb.get(n, 0.0) - wa.get(n, 0.0)))
    table = Table(title=f"mean weights that moved most, top {args.top}")
    for column in ("feature", a, b, "change"):
        table.add_column(column, justify="right" if column != "feature" else "left")
    for name in names[:args.top]:
        x, y = wa.get(name, 0.0), wb.get(name, 0.0)
        table.add_row(name, f"{x:+.4f}", f"{y:+.4f}", f"{y - x:+.4f}")
    console.print(table)
    return 0


# ------------------------------------------------------------------------ parser


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``train`` and ``models`` to ``sub``; ``--model``/``--registry`` to replay and run."""
    for name in ("replay", "run"):
        p = sub.choices[name]
        p.add_argument("--model", action="append", default=None, metavar="[TENANT=]VERSION",
                       help="start scoring from this registered model (every tenant, or "
                            "TENANT's; repeatable): registry.models")
        p.add_argument("--registry", type=Path, default=None,
                       help="the model registry (default: registry.directory)")
        p.set_defaults(func=_guarded(p.get_default("func")))

    p = sub.add_parser("train", help="fit tenant models from a recording and register them",
                       epilog="example:\n  esg-leads train /tmp/world --out /tmp/registry "
                              "--until 2026-03-01T00:00:00Z")
    p.add_argument("recording", type=Path, help="the recording to learn from (point in time)")
    p.add_argument("--out", required=True, type=Path, help="the model registry to write to")
    p.add_argument("--until", default=None, metavar="TIME",
                   help="learn only from messages before TIME (ISO 8601; default: all)")
    p.add_argument("--model", action="append", default=None, metavar="[TENANT=]VERSION",
                   help="continue training from this version (in --out): its parent")
    p.add_argument("--config", type=Path, default=None,
                   help="TOML settings (default: RECORDING/config.toml if present)")
    p.set_defaults(func=_guarded(cmd_train))

    p = sub.add_parser("models", help="list, show or compare registered model versions",
                       epilog="example:\n  esg-leads models list --registry /tmp/registry\n"
                              "  esg-leads models diff m-1a2b m-3c4d --registry /tmp/registry")
    models = p.add_subparsers(dest="models_command", required=True, metavar="ACTION",
                              help="list | show VERSION | diff A B | promote VERSION | "
                                   "pin VERSION | unpin | rollback VERSION")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--registry", type=Path, default=None,
                       help="the model registry (default: registry.directory of --config)")
        q.add_argument("--config", type=Path, default=None, help="TOML settings file")

    q = models.add_parser("list", help="every version, oldest first")
    common(q)
    q.add_argument("--tenant", default=None, help="only this tenant's versions")
    q.set_defaults(func=_guarded(cmd_list))
    q = models.add_parser("show", help="one version's card and largest weights")
    q.add_argument("version", help="a version or an unambiguous prefix (m-1a2b)")
    common(q)
    q.add_argument("--top", type=int, default=10, help="how many of the largest weights")
    q.set_defaults(func=_guarded(cmd_show))
    q = models.add_parser("diff", help="two versions side by side")
    q.add_argument("version_a", help="the version compared from")
    q.add_argument("version_b", help="the version compared to")
    common(q)
    q.add_argument("--top", type=int, default=10, help="how many of the weights that moved most")
    q.set_defaults(func=_guarded(cmd_diff))
    from esg_leads.flows.model_control import add_commands as add_control_commands

    add_control_commands(models, _guarded)


__all__ = ["add_commands", "model_overrides"]
