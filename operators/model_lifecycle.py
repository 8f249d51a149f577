"""Champion and challenger of one tenant: shadow, canary, promotion, rollback, commands.

A tenant's *champion* decides its leads (:class:`~operators.scoring.TenantScorer`).
This module adds what model-risk practice asks around it:

* **Shadow.** A *challenger* — a registry version named in ``models.challengers``,
  or one an operator promotes by command — scores every feature vector the champion
  scores, with the same blend, prior and interval code (it is served through the
  scorer itself, :func:`serving`). Its scores go to ``leads.shadow`` (``shadow.parquet``
  in a replay) and to the metrics, never to a decision: with no canary, the leads are
  byte for byte those of a run without a challenger.
* **Canary.** ``canary_share`` of the tenant's investors, chosen by a stable hash of
  tenant and investor id (:func:`online_models.champion.in_canary`), are decided by
  the challenger; their leads name it in ``model.model_version`` (``...:canary-m-...``).
* **Promotion.** Both models predict every label before either learns it; the
  per-label log-loss differences over the latest ``models.window_labels`` labels
  feed a paired test (:class:`~online_models.champion.PairedLosses`). Once
  ``min_labels`` are shared and the lower ``confidence`` bound of (champion -
  challenger) is above ``margin``, the challenger becomes champion.
* **Rollback.** The replaced champion stays in shadow (learning, unpublished) for
  ``watch_labels`` labels; if the same test finds the new champion worse than its
  predecessor, the predecessor serves again. After that the promotion stands.
* **Drift retraining.** A drift detection (the scorer's PSI windows or error ADWIN)
  starts a challenger at once: a copy of the champion (model and calibrator) fitted on
  the tenant's recent labels (:class:`~online_models.recent_labels.RecentLabels`, the
  last ``models.retraining.lookback`` before the detection) with sample weight
  ``weight``, except those of a held-out share of investors, on which both models are
  judged at once. Later labels are judged prequentially (both predict before either
  learns); the challenger keeps learning them with the same weight. The paired test is
  read at planned looks (every ``look_labels`` shared labels, ``looks`` of them, each at
  a Bonferroni share of ``1 - confidence``); the challenger is promoted at the first look
  it wins, and retired (``challenger_retired``, with the test's figures) if it has not
  won by the last. Judging only at planned looks keeps the chance of promoting a model
  that is no better at most ``1 - confidence``, where testing after every label would
  raise it with every label.
* **Commands** (``ops.control``, signed: :mod:`operators.control_auth`): ``promote
  VERSION``, ``pin VERSION`` (serve it and freeze: no automatic promotion or rollback
  until ``unpin``), ``unpin``, ``rollback VERSION|previous``.

Every change is an ``ops.alerts`` alert (``challenger_started``, ``retraining_triggered``,
``challenger_retired``, ``model_promoted``, ``model_rolled_back``, ``model_pinned``,
``model_unpinned``) and an audit row (agent
``model_lifecycle``, investor ``*model*``), naming the trigger (``rule`` or the command's
event id and operator) and the test's numbers.

**When a command takes effect.** A command is an input event like any other: it
takes its position in the input's replay order (Kafka timestamp — ``esg-leads models``
sets it to the command's ``event_time`` — then topic, partition, offset), and the
scoring step processes its inputs in that order (:mod:`flows.ordering`). So every
label learned and every lead scored from an input *after* the command uses the new
model, everything before it the old one: in a live run and in a replay of its
recording alike. A command naming a version the registry does not hold (or one of
another feature set) is an authentic mistake: a ``rejected_command`` dead letter.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.online_models.champion import PairedLosses, in_canary, log_loss
from esg_leads.online_models.model_codec import bagged_model, calibrator
from esg_leads.online_models.model_store import RegistryError, registry_directory
from esg_leads.online_models.recent_labels import Recalled, RecentLabels
from esg_leads.operators.audit import audit_record
from esg_leads.operators.tiers import tier_of
from esg_leads.operators.validation import dead_letter
from esg_leads.operators.warm_start import load_version
from esg_leads.schemas.inputs import ModelAction, ModelCommand
from esg_leads.schemas.keys import output_key
from esg_leads.schemas.outputs import SCHEMA_VERSION, DlqReason
from esg_leads.schemas.records import Emitted, FeatureVector, Ingested, LabelledExample, Scored
from esg_leads.schemas.settings import ChallengerSettings, ModelSettings, Settings

if TYPE_CHECKING:
    from collections import Counter

    from esg_leads.online_models.registry import ModelRegistry
    from esg_leads.schemas.settings import ScoringSettings


class TenantScorer(Protocol):
    """What the governor reads, and swaps while a challenger serves, on the tenant's
    scorer (``operators.scoring.TenantScorer``, which imports this module: a protocol,
    not an import back, keeps the dependency one way)."""

    s: ScoringSettings
    registry: ModelRegistry
    calibrator: OnlineCalibrator
    origin: str | None
    labels: int
    counts: Counter[tuple[str, str]]
    gauges: dict[tuple[str, str], float]

    def _members(self, X: np.ndarray, intent: np.ndarray, alignment: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def _raw_probability_one(self, vector: FeatureVector) -> float: ...

    def score_many(self, vectors: list[FeatureVector], now: datetime
                   ) -> tuple[list[Scored], list[dict]]: ...

AGENT = "model_lifecycle"
AGENT_VERSION = "model-lifecycle/1"
#: The audit trail's investor id for rows about a tenant's model (no investor id can
#: contain ``*``, so an erasure never deletes them).
MODEL_SUBJECT = "*model*"
#: Command ids remembered to refuse a redelivered command (per tenant).
_SEEN_COMMANDS = 4096


@dataclass
class Candidate:
    """A model that may serve: its name, parameters and calibrator."""

    version: str
    model: BaggedLogisticRegression
    calibrator: OnlineCalibrator
    #: The registry version it came from (``TenantScorer.origin`` while it serves).
    origin: str | None
    canary_share: float = 0.0
    #: Drift retraining's challenger: the detection that started it (``detector``,
    #: ``subject``); ``None`` for a registry version.
    retrain: dict | None = None
    #: Planned looks of the paired test taken so far, and the shared labels at which the
    #: next is due (drift retraining only).
    looks_done: int = 0
    next_look: int = 0


@contextmanager
def serving(scorer: TenantScorer, candidate: Candidate) -> Iterator[None]:
    """``scorer`` with ``candidate`` in the champion's place, for the duration.

    So a challenger's scores come from the very code that scores the champion's
    (blend, prior, calibration, interval), whatever that code becomes.
    """
    kept = scorer.registry.champion, scorer.calibrator
    scorer.registry.champion, scorer.calibrator = candidate.model, candidate.calibrator
    try:
        yield
    finally:
        scorer.registry.champion, scorer.calibrator = kept


def challenger_setting(settings: Settings, tenant: str) -> ChallengerSettings | None:
    challengers = settings.models.challengers
    return challengers.get(tenant, challengers.get("*"))


def check_challengers(settings: Settings) -> dict[str, str]:
    """Load (and verify) every configured challenger; tenant -> version. Raises
    :class:`RegistryError` (one line) before the flow starts."""
    directory = registry_directory(settings)
    return {tenant: load_version(directory, cfg.version)[0] for tenant in settings.tenants
            if (cfg := challenger_setting(settings, tenant)) is not None}


def _from_registry(directory: Path, version: str, share: float = 0.0) -> Candidate:
    version, artifact = load_version(directory, version)
    return Candidate(version, bagged_model(artifact.state.model),
                     calibrator(artifact.state.calibrator), version, share)


class ModelGovernor:
    """The model lifecycle of one tenant (state of the tenant's scoring step)."""

    def __init__(self, tenant: str, settings: Settings) -> None:
        self.tenant = tenant
        self.configure(settings)
        self.challenger: Candidate | None = None
        self.predecessor: Candidate | None = None
        self.retrains = 0  #: drift-retraining challengers started
        self.challenger_test = PairedLosses(self.s.window_labels)
        self.predecessor_test = PairedLosses(self.s.window_labels)
        self.pinned = False
        self.changes = 0
        self._seen: deque[str] = deque(maxlen=_SEEN_COMMANDS)
        cfg = challenger_setting(settings, tenant)
        self._announce = cfg is not None
        if cfg is not None:
            self.challenger = _from_registry(self._directory, cfg.version, cfg.canary_share)

    def configure(self, settings: Settings) -> None:
        """Re-read the settings (at start and on resume): rules, registry, canary share."""
        self.s: ModelSettings = settings.models
        self._directory = registry_directory(settings)
        capacity = self.s.retraining.buffer_labels
        if getattr(self, "recent", None) is None:  # also: a snapshot from before retraining
            self.recent = RecentLabels(capacity, settings.contact_hash_salt.get_secret_value()
                                       .encode())
            self.retrains = getattr(self, "retrains", 0)
        else:
            self.recent.resize(capacity)
        #: Drift detections since the last scoring or learning step: (detector, subject, when).
        self._requests: list[tuple[str, str, datetime]] = getattr(self, "_requests", [])
        cfg = challenger_setting(settings, self.tenant)
        challenger = getattr(self, "challenger", None)
        if challenger is not None and cfg is not None and challenger.origin == \
                load_version(self._directory, cfg.version)[0]:
            challenger.canary_share = cfg.canary_share

    # ------------------------------------------------------------------ scoring

    def score(self, scorer: TenantScorer, vectors: list[FeatureVector], now: datetime
              ) -> tuple[list[Scored], list[dict], list]:
        """The leads of ``vectors`` (the canary's by the challenger), the scorer's alerts,
        and this module's outputs (shadow records, an announcement; counted already)."""
        ch = self.challenger
        if ch is None:
            records, alerts = scorer.score_many(vectors, now)
            return records, alerts, self.scored(scorer, now)
        extra = self._announcement(scorer, vectors[0].as_of, now)
        canary = [in_canary(self.tenant, v.investor_id, ch.canary_share) for v in vectors]
        if not any(canary):
            records, alerts = scorer.score_many(vectors, now)
        else:
            records, alerts = self._split(scorer, ch, vectors, canary, now)
        extra.extend(self._shadow(scorer, ch, vectors, records, canary, now))
        scorer.counts[("shadow_scores", self.tenant)] += len(vectors)
        if any(canary):
            scorer.counts[("canary_leads", self.tenant)] += sum(canary)
        extra.extend(self._retrain_requested(scorer, now))
        return records, alerts, extra

    def champion_alone(self) -> bool:
        """Whether the champion alone scores (no challenger to shadow or canary): the
        scorer may then score several positions at once, telling :meth:`scored` after each."""
        return self.challenger is None

    def scored(self, scorer: TenantScorer, now: datetime) -> list:
        """The scorer scored a position with the champion alone: start the retraining a
        detector asked for meanwhile, if any (its outputs)."""
        return self._retrain_requested(scorer, now)

    def _split(self, scorer: TenantScorer, ch: Candidate, vectors: list[FeatureVector],
               canary: list[bool], now: datetime) -> tuple[list[Scored], list]:
        mine = [v for v, c in zip(vectors, canary, strict=True) if not c]
        theirs = [v for v, c in zip(vectors, canary, strict=True) if c]
        records, alerts = scorer.score_many(mine, now) if mine else ([], [])
        with serving(scorer, ch):
            canary_records, canary_alerts = scorer.score_many(theirs, now)
        for scored in canary_records:
            model = dict(scored.record["model"])
            model["model_version"] = f"{model['model_version']}:canary-{ch.version}"
            scored.record["model"] = model
        ours, others = iter(records), iter(canary_records)
        return [next(others) if c else next(ours) for c in canary], alerts + canary_alerts

    def _shadow(self, scorer: TenantScorer, ch: Candidate, vectors: list[FeatureVector],
                records: list[Scored], canary: list[bool], now: datetime) -> list[Emitted]:

        X = np.array([v.values for v in vectors], dtype=float)
        intent = np.array([v.intent for v in vectors])
        alignment = np.array([v.esg_alignment for v in vectors])

        def probabilities(candidate: Candidate | None) -> list[float]:
            if candidate is None:
                members = scorer._members(X, intent, alignment)[0]  # noqa: SLF001
                cal = scorer.calibrator
            else:
                with serving(scorer, candidate):
                    members = scorer._members(X, intent, alignment)[0]  # noqa: SLF001
                cal = candidate.calibrator
            return cal.transform_many(np.add.reduce(members, axis=1) / members.shape[1]
                                      ).round(6).tolist()

        # The decided side is the lead's own probability; the other side is computed.
        challenger_p = probabilities(ch) if not all(canary) else []
        champion_p = probabilities(None) if any(canary) else []
        champion_version = self.champion_version(scorer)
        out = []
        for i, (vector, scored) in enumerate(zip(vectors, records, strict=True)):
            decided = scored.record["probability"]
            if canary[i]:
                p_champion, p_challenger = champion_p[i], decided
            else:
                p_champion, p_challenger = decided, challenger_p[i]
            as_of = vector.as_of
            out.append(Emitted("shadow", output_key(self.tenant, vector.investor_id), {
                "schema_version": SCHEMA_VERSION,
                "idempotency_key": f"shadow:{self.tenant}:{vector.investor_id}:"
                                   f"{int(as_of.timestamp())}:{ch.version}",
                "tenant": self.tenant, "investor_id": vector.investor_id,
                "event_time": as_of, "processed_at": now,
                "champion_version": champion_version, "challenger_version": ch.version,
                "champion_probability": p_champion, "challenger_probability": p_challenger,
                "champion_tier": tier_of(p_champion, scorer.s),
                "challenger_tier": tier_of(p_challenger, scorer.s),
                "decided_by": "challenger" if canary[i] else "champion",
                "feature_set_version": vector.feature_set_version}))
        return out

    # ---------------------------------------------------------- drift retraining

    def drift_detected(self, detector: str, subject: str, when: datetime) -> None:
        """A drift detector of the scorer fired at ``when`` (event time): a retraining
        challenger starts once the scorer's current step is done (see
        :meth:`_retrain_requested`)."""
        self._requests.append((detector, subject, when))

    def forget(self, investor_id: str) -> int:
        """An investor's erasure: its kept labels leave the retraining buffer."""
        return self.recent.forget(investor_id)

    def _retrain_requested(self, scorer: TenantScorer, now: datetime) -> list:
        """Start a retraining challenger for the first detection since the last step,
        unless one challenger runs already or the tenant's model is pinned."""
        if not self._requests:
            return []
        (detector, subject, when), self._requests = self._requests[0], []
        if self.challenger is not None or self.pinned:
            return []
        return self._start_retraining(scorer, detector, subject, when, now)

    def _start_retraining(self, scorer: TenantScorer, detector: str, subject: str,
                          when: datetime, now: datetime) -> list:
        r = self.s.retraining
        self.retrains += 1
        champion = scorer.registry.champion
        ch = Candidate(f"online-g{scorer.registry.generation + 1}", copy.deepcopy(champion),
                       copy.deepcopy(scorer.calibrator), None,
                       retrain={"detector": detector, "subject": subject})
        recent = self.recent.since(when.timestamp() - r.lookback.total_seconds())
        fitted = [e for e in recent if not e.held_out]
        for e in fitted:  # the champion learned them once; the challenger weighs them up
            ch.model.learn_one(e.features, e.label, r.weight)
        # Unbounded in effect: every look reads every shared label (the held-out seed too).
        test = PairedLosses(r.buffer_labels + r.look_labels * r.looks)
        held = [e for e in recent if e.held_out]
        # Both models learned the held-out labels once, alike (the challenger is the
        # champion's copy), and the challenger's fit saw none of them: what separates the
        # two on these labels is the fit alone.
        for e, p_champion, p_challenger in zip(held, self._calibrated(scorer, None, held),
                                               self._calibrated(scorer, ch, held), strict=True):
            test.add(log_loss(p_champion, e.label), log_loss(p_challenger, e.label))
        # The first look as soon as look_labels are shared (at once, if the held-out labels
        # suffice), then one every look_labels more.
        ch.next_look = r.look_labels
        self.challenger, self.challenger_test = ch, test
        out = self._record(scorer, "retraining_triggered", subject, self.champion_version(scorer),
                           f"drift:{detector}", when, now, test,
                           confidence=1 - (1 - self.s.confidence) / r.looks,
                           extra={"challenger": ch.version, "fitted_labels": len(fitted),
                                  "held_out_labels": len(held),
                                  "lookback_hours": r.lookback.total_seconds() / 3600,
                                  "weight": r.weight})
        return out + self._look(scorer, when, now)

    @staticmethod
    def _calibrated(scorer: TenantScorer, candidate: Candidate | None,
                    examples: list[Recalled]) -> list[float]:
        """``candidate``'s (``None``: the champion's) published probability of each kept example."""
        if candidate is None:
            return [scorer.calibrator.transform(scorer._raw_probability_one(e))  # noqa: SLF001
                    for e in examples]  # type: ignore[arg-type]
        with serving(scorer, candidate):
            return [candidate.calibrator.transform(scorer._raw_probability_one(e))  # noqa: SLF001
                    for e in examples]  # type: ignore[arg-type]

    def _look(self, scorer: TenantScorer, when: datetime, now: datetime) -> list:
        """A planned look of the retraining challenger's paired test, if one is due:
        promote on a win, retire after the last look without one."""
        ch, test, r = self.challenger, self.challenger_test, self.s.retraining
        if ch is None or ch.retrain is None:
            return []
        if test.total < ch.next_look or ch.looks_done >= r.looks:
            return []
        ch.looks_done = due = ch.looks_done + 1
        ch.next_look = test.total + r.look_labels
        confidence = 1 - (1 - self.s.confidence) / r.looks
        wins = len(test) >= 2 and test.lower_bound(confidence) > self.s.margin
        extra = {"look": due, "looks": r.looks, "detector": ch.retrain["detector"],
                 "drift_subject": ch.retrain["subject"], "wins": str(wins).lower()}
        trigger = f"drift:{ch.retrain['detector']}"
        if wins and self.s.auto_promote:
            return self._change(scorer, "model_promoted", ch, trigger, when, now, test,
                                confidence=confidence, extra=extra)
        if due < r.looks:
            return []
        self.challenger = None
        self.challenger_test = PairedLosses(self.s.window_labels)
        return self._record(scorer, "challenger_retired", ch.version,
                            self.champion_version(scorer), trigger, when, now, test,
                            confidence=confidence, extra=extra)

    def champion_version(self, scorer: TenantScorer) -> str:
        return scorer.origin or f"online-g{scorer.registry.generation}"

    # ----------------------------------------------------------------- learning

    def judge(self, scorer: TenantScorer, example: LabelledExample) -> dict[str, tuple]:
        """The shadow models' (raw, calibrated) probabilities of a label's features,
        before anything learns from it."""
        judged = {}
        for name, candidate in (("challenger", self.challenger), ("predecessor", self.predecessor)):
            if candidate is not None:
                with serving(scorer, candidate):
                    p_raw = scorer._raw_probability_one(example.features)  # noqa: SLF001
                judged[name] = (p_raw, candidate.calibrator.transform(p_raw))
        return judged

    def settle(self, scorer: TenantScorer, example: LabelledExample, p_champion: float,
               judged: dict[str, tuple], now: datetime) -> list:
        """Shadow models learn the label; the rules may promote or roll back."""
        y, x, when = example.label, example.features.features, example.outcome_time
        out = self._announcement(scorer, when, now)
        loss = log_loss(p_champion, y)
        for name, (p_raw, p) in judged.items():
            candidate = self.challenger if name == "challenger" else self.predecessor
            candidate.calibrator.learn_one(p_raw, y)
            candidate.model.learn_one(x, y, self.s.retraining.weight
                                      if candidate.retrain is not None else 1.0)
            test = self.challenger_test if name == "challenger" else self.predecessor_test
            test.add(loss, log_loss(p, y))
        if "challenger" in judged:
            scorer.gauges[("challenger_loss_gain", self.tenant)] = round(
                self.challenger_test.mean(), 6)
        vector = example.features
        self.recent.add(self.tenant, example.investor_id, x, vector.intent, vector.esg_alignment,
                        y, when.timestamp(), self.s.retraining.holdout_share)
        s = self.s
        if self.pinned:
            self._requests = []
            return out
        if self.challenger is not None and self.challenger.retrain is not None:
            out.extend(self._look(scorer, when, now))
        elif self.challenger is not None and s.auto_promote and self._wins(self.challenger_test):
            out.extend(self._change(scorer, "model_promoted", self.challenger, "rule", when, now,
                                    self.challenger_test))
        elif self.predecessor is not None:
            test = self.predecessor_test
            # The predecessor significantly better than the model that replaced it.
            if s.auto_rollback and self._wins(test):
                out.extend(self._change(scorer, "model_rolled_back", self.predecessor, "rule",
                                        when, now, test))
            elif test.total >= s.watch_labels:
                self.predecessor = None  # the promotion stands
        out.extend(self._retrain_requested(scorer, now))
        return out

    def _wins(self, test: PairedLosses) -> bool:
        """Whether the shadow model of ``test`` (champion loss - its loss, per label) is
        significantly better than the champion: enough shared labels, and the lower
        confidence bound of the mean difference above the margin."""
        return len(test) >= self.s.min_labels and \
            test.lower_bound(self.s.confidence) > self.s.margin

    # ----------------------------------------------------------------- commands

    def command(self, scorer: TenantScorer, ingested: Ingested, now: datetime) -> list:
        """Obey one (authenticated) command; a dead letter when it cannot be applied."""
        cmd: ModelCommand = ingested.event  # type: ignore[assignment]
        if cmd.event_id in self._seen:
            return [dead_letter(ingested, DlqReason.DUPLICATE,
                                f"model command {cmd.event_id!r} was already applied", now)]
        self._seen.append(cmd.event_id)
        trigger = f"command:{cmd.event_id}"
        when = cmd.event_time
        scorer.counts[("model_commands", cmd.action.value)] += 1
        try:
            if cmd.action is ModelAction.UNPIN:
                self.pinned = False
                scorer.counts[("used", ingested.topic)] += 1
                return self._record(scorer, "model_unpinned", self.champion_version(scorer),
                                    None, trigger, when, now, None, cmd, ingested)
            target = self._target(scorer, cmd)
        except RegistryError as error:
            return [dead_letter(ingested, DlqReason.REJECTED_COMMAND, str(error), now)]
        scorer.counts[("used", ingested.topic)] += 1
        out = []
        if target is not None:
            kind = "model_rolled_back" if cmd.action is ModelAction.ROLLBACK else "model_promoted"
            out.extend(self._change(scorer, kind, target, trigger, when, now, None, cmd, ingested))
        if cmd.action is ModelAction.PIN:
            self.pinned = True
            # Nor may drift retraining promote behind the pin: its challenger goes, and
            # no new one starts until unpin.
            if self.challenger is not None and self.challenger.retrain is not None:
                self.challenger = None
            out.extend(self._record(scorer, "model_pinned", self.champion_version(scorer), None,
                                    trigger, when, now, None, cmd, ingested))
        return out

    def _target(self, scorer: TenantScorer, cmd: ModelCommand) -> Candidate | None:
        """The model the command makes champion (``None``: it serves already)."""
        if cmd.version == "previous":
            if self.predecessor is None:
                raise RegistryError("rollback previous: no promotion of this tenant's model "
                                    "is being watched (its predecessor was dropped or never was)")
            return self.predecessor
        version = load_version(self._directory, cmd.version)[0]
        if version == scorer.origin:
            return None
        for candidate in (self.challenger, self.predecessor):
            if candidate is not None and candidate.origin == version:
                return candidate  # with what it has learned in shadow
        return _from_registry(self._directory, version)

    # ------------------------------------------------------------------ changes

    def _change(self, scorer: TenantScorer, kind: str, new: Candidate, trigger: str,
                when: datetime, now: datetime, test: PairedLosses | None,
                cmd: ModelCommand | None = None, ingested: Ingested | None = None,
                confidence: float | None = None, extra: dict | None = None) -> list:
        old = Candidate(self.champion_version(scorer), scorer.registry.champion,
                        scorer.calibrator, scorer.origin)
        scorer.registry.champion, scorer.calibrator = new.model, new.calibrator
        scorer.origin = new.origin
        scorer.registry.generation += 1
        if new is self.challenger:
            self.challenger = None
        if kind == "model_promoted":
            self.predecessor = old  # watched: rolled back if the new model does worse
        else:
            self.predecessor = None  # a rollback is final; promote again to retry
        self.challenger_test = PairedLosses(self.s.window_labels)
        self.predecessor_test = PairedLosses(self.s.window_labels)
        return self._record(scorer, kind, self.champion_version(scorer), old.version, trigger,
                            when, now, test, cmd, ingested, extra, confidence)

    def _announcement(self, scorer: TenantScorer, when: datetime, now: datetime) -> list:
        ch = self.challenger
        if not self._announce or ch is None:  # None: a command promoted it first
            self._announce = False
            return []
        self._announce = False
        return self._record(scorer, "challenger_started", ch.version,
                            self.champion_version(scorer), "settings", when, now, None,
                            extra={"canary_share": ch.canary_share})

    def _record(self, scorer: TenantScorer, kind: str, subject: str, previous: str | None,
                trigger: str, when: datetime, now: datetime, test: PairedLosses | None,
                cmd: ModelCommand | None = None, ingested: Ingested | None = None,
                extra: dict | None = None, confidence: float | None = None) -> list:
        """The alert and the audit row of one change (``confidence``: the test's, if not
        ``models.confidence``)."""
        self.changes += 1
        details: dict = {"trigger": trigger, "model_generation": scorer.registry.generation,
                         "tenant_labels": scorer.labels, "pinned": str(self.pinned).lower(),
                         **(extra or {})}
        if previous is not None:
            details["previous"] = previous
        if test is not None:
            confidence = confidence or self.s.confidence
            bound = test.lower_bound(confidence)
            details.update(shared_labels=len(test), mean_loss_difference=round(test.mean(), 6),
                           lower_bound=round(bound, 6) if bound > -1e9 else "none",
                           confidence=round(confidence, 6))
        if cmd is not None:
            details["operator"] = cmd.operator
            if cmd.note:
                details["note"] = cmd.note
        alert = {
            "schema_version": SCHEMA_VERSION,
            "idempotency_key": f"alert:{self.tenant}:{kind}:{subject}:{self.changes}",
            "tenant": self.tenant, "kind": kind, "detector": AGENT, "subject": subject,
            "event_time": when, "processed_at": now, "details": details}
        lineage = [] if ingested is None else [
            {"topic": ingested.topic, "partition": ingested.partition,
             "offset": ingested.offset, "event_id": ingested.event.event_id}]  # type: ignore[attr-defined]
        row = audit_record(self.tenant, MODEL_SUBJECT, when, now, AGENT, AGENT_VERSION, kind,
                           f"{kind} {subject} ({trigger})", {"trigger": trigger}, details,
                           lineage, sequence=str(self.changes))
        scorer.counts[("alerts", kind)] += 1
        return [alert, Emitted("audit", self.tenant, row)]


__all__ = ["AGENT", "Candidate", "ModelGovernor", "check_challengers", "serving"]
