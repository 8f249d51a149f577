"""``esg-leads train``: fit tenant models offline from a recording, and register them.

Training *is* a replay: the very same ``build_flow`` over the recording (cut at
``until``), whose tenant scorers are then exported to the registry. So a model
learns from exactly the labels the live flow would have learned from by then,
each joined to the features the investor had when it was scored before its
outcome (the investor stage's point-in-time rule), test-then-train, in the
recording's replay order. Nothing here computes a feature or a label: a
re-implementation would be a second place for leakage to creep in.

Outputs of the run (leads, alerts, …) are discarded: training has no side
effects but the registry. If the settings warm-start a tenant (``registry.models``),
training continues from that model and the new version names it as its parent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bytewax.inputs import StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from esg_leads.connectors.key_vault import KeyVault
from esg_leads.connectors.recording import RecordedMessage
from esg_leads.connectors.recording_source import RecordingSource
from esg_leads.flows.pipeline import Sinks, build_flow
from esg_leads.flows.steps import Clock, streaming_gc, system_clock
from esg_leads.online_models.model_store import ModelStore, registry_directory
from esg_leads.online_models.quality import roc_auc
from esg_leads.operators.scoring import MODEL_NAME, TenantScorer
from esg_leads.operators.warm_start import check_warm_start, scorer_artifact
from esg_leads.replay.runner import replay_settings
from esg_leads.schemas.records import LabelledExample
from esg_leads.schemas.settings import Settings


class TrainingScorer(TenantScorer):
    """A tenant scorer that also keeps what a model card reports: every label's
    prequential prediction (made before learning it) and the labels' time span."""

    def __init__(self, tenant: str, settings: Settings) -> None:
        super().__init__(tenant, settings)
        self.predictions: list[tuple[float, bool]] = []
        self.first: datetime | None = None
        self.last: datetime | None = None
        self.quality = _Recorder(self.quality, self.predictions)

    def learn(self, example: LabelledExample, now: datetime) -> list[dict]:
        when = example.outcome_time
        self.first = when if self.first is None else min(self.first, when)
        self.last = when if self.last is None else max(self.last, when)
        return super().learn(example, now)


class _Recorder:
    """Rolling quality that also remembers every pair it is given."""

    def __init__(self, inner, pairs: list[tuple[float, bool]]) -> None:
        self._inner = inner
        self._pairs = pairs

    def add(self, p: float, y: bool) -> None:
        self._pairs.append((p, y))
        self._inner.add(p, y)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


def log_loss(pairs: list[tuple[float, bool]]) -> float | None:
    if not pairs:
        return None
    eps = 1e-12
    return -sum(math.log(min(1 - eps, max(eps, p)) if y else 1 - min(1 - eps, max(eps, p)))
                for p, y in pairs) / len(pairs)


class _UntilPartition(StatefulSourcePartition[RecordedMessage, int]):
    """The recording's messages strictly before ``until_ms`` (replay order is by time)."""

    def __init__(self, inner: StatefulSourcePartition, until_ms: int) -> None:
        self._inner = inner
        self._until_ms = until_ms
        self._done = False

    def next_batch(self) -> list[RecordedMessage]:
        if self._done:
            raise StopIteration
        batch = self._inner.next_batch()
        if batch and batch[-1].timestamp_ms >= self._until_ms:
            self._done = True
            batch = [m for m in batch if m.timestamp_ms < self._until_ms]
        return batch

    def snapshot(self) -> int:
        return self._inner.snapshot()


class _UntilSource(RecordingSource):
    def __init__(self, directory: Path, until: datetime, batch_rows: int) -> None:
        super().__init__(directory, batch_rows=batch_rows)
        self.until_ms = int(until.timestamp() * 1000)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None):
        return _UntilPartition(super().build_part(step_id, for_part, resume_state), self.until_ms)


class _Discard(DynamicSink):
    """Training keeps models, not outputs."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        return _Dropped()


class _Dropped(StatelessSinkPartition):
    def write_batch(self, items: list) -> None:
        pass


@dataclass(frozen=True)
class Trained:
    tenant: str
    version: str | None  #: None: the tenant had no label before the cut-off
    labels: int
    log_loss: float | None


def fit(recording: str | Path, settings: Settings, *, until: datetime | None = None,
        clock: Clock = system_clock) -> dict[str, TrainingScorer]:
    """Replay ``recording`` (messages before ``until``); the tenant scorers it built."""
    settings = replay_settings(settings)
    scorers: dict[str, TrainingScorer] = {}

    def scorer(tenant: str) -> TrainingScorer:
        scorers[tenant] = TrainingScorer(tenant, settings)
        return scorers[tenant]

    batch = settings.kafka.batch_size  # the live batch size, as replays use
    source = (RecordingSource(recording, batch_rows=batch) if until is None
              else _UntilSource(Path(recording), until, batch))
    discard = _Discard()
    sinks = Sinks(leads=discard, dlq=discard, alerts=discard, review=discard, handoff=discard,
                  audit=discard, tombstones=discard)
    keys = KeyVault(":memory:")
    try:
        flow = build_flow(settings, source, sinks, clock=clock, keys=keys, scorer=scorer,
                          snapshots=False)
        with streaming_gc():
            run_main(flow, epoch_interval=timedelta(hours=1))
    finally:
        keys.close()
    return scorers


def train(recording: str | Path, registry: str | Path, settings: Settings, *,
          until: datetime | None = None, clock: Clock = system_clock,
          created_by: str | None = None) -> list[Trained]:
    """Replay ``recording`` (messages before ``until``) and register each tenant's model."""
    recording = Path(recording)
    if until is not None and until.tzinfo is None:
        until = until.replace(tzinfo=timezone.utc)
    check_warm_start(settings)  # a bad starting model fails before any work
    scorers = fit(recording, settings, until=until, clock=clock)
    return register(scorers, registry, settings, source=recording, until=until, clock=clock,
                    created_by=created_by)


def register(scorers: dict[str, TrainingScorer], registry: str | Path, settings: Settings, *,
             source: Path, until: datetime | None = None, clock: Clock = system_clock,
             created_by: str | None = None) -> list[Trained]:
    """Register the model of every tenant of ``scorers`` that learned a label."""
    recording = source
    parents = check_warm_start(settings)
    store = ModelStore(registry)
    trigger = created_by or f"train {recording}" + (f" --until {until.isoformat()}" if until else "")
    out = []
    for tenant in sorted(settings.tenants):
        s = scorers.get(tenant)
        if s is None or not s.predictions:
            out.append(Trained(tenant, None, 0, None))
            continue
        parent = parents.get(tenant)
        start = s.first
        inherited = inherited_labels = 0
        if parent is not None:  # the card covers the parent's labels too
            card = ModelStore(registry_directory(settings)).load(parent).card
            inherited, inherited_labels = card.positives, card.labels
            start = card.window_start or s.first
        pairs = s.predictions
        recent = pairs[-s.quality.window:]
        validation = {
            "log_loss": log_loss(recent), "auc": roc_auc(*zip(*recent, strict=True)),
            "window": len(recent), "log_loss_all": log_loss(pairs), "labels_evaluated": len(pairs),
        }
        artifact = scorer_artifact(
            s, name=MODEL_NAME, labels=inherited_labels + len(pairs), positives=inherited + sum(y for _, y in pairs),
            window=(start, s.last), until=until, validation=validation, parent=parent,
            created_by=trigger, source=str(recording))
        version = store.register(artifact, clock())
        out.append(Trained(tenant, version, len(pairs), validation["log_loss"]))
    return out


__all__ = ["Trained", "TrainingScorer", "fit", "register", "train"]
