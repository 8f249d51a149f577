"""The scoring agent: per-tenant online model, blended with a prior and (opt-in) a global model.

For each feature vector the tenant's score is

    p_raw = w_prior * prior + (1 - w_prior) * (w_tenant * p_tenant + (1 - w_tenant) * p_global)

where the prior is the transparent rule of :mod:`operators.prior`, ``w_prior``
fades as labels accumulate (``prior_labels``), and ``w_tenant`` grows with the
tenant's own labels (``tenant_labels_for_trust``); then ``p = calibrate(p_raw)``,
the probability of conversion within ``scoring.horizon`` (90 days) of the vector's
time: the calibrator learns every score once that score's outcome is known
(:mod:`online_models.horizon`).
The interval combines the bagged members' disagreement with terms for thin
evidence (few model labels, few events from this investor) and stale ESG data,
so it is wide when little is known and narrows as evidence grows. While a signal source
is stale, :mod:`operators.degradation` blends its facts to reference values, moves its
share of the evidence to the prior and widens the interval.

Labels arrive as :class:`~schemas.records.LabelledExample` — features as they were
when the investor was scored before the outcome — and are used test-then-train:
first to score quality and calibration, then to learn.

Tenants are isolated by default: the global model serves only tenants that set
``use_global_prior`` and learns only from tenants that set ``contribute_to_global``
(see :func:`uses_global_prior`); for any other tenant ``w_tenant`` is 1 and no
other tenant's data reaches its scores.
"""

from __future__ import annotations

import pickle
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from statistics import NormalDist

import numpy as np

from esg_leads.online_models.bagged_logistic import BaggedLogisticRegression, probabilities
from esg_leads.online_models.calibration import OnlineCalibrator
from esg_leads.online_models.horizon import HorizonLabeller
from esg_leads.online_models.drift import Detection, DriftMonitor
from esg_leads.online_models.quality import RollingCalibration, RollingQuality
from esg_leads.online_models.window_drift import WindowDetection, WindowDrift
from esg_leads.online_models.registry import ModelRegistry
from esg_leads.operators.degradation import Degradation, assess
from esg_leads.operators.features import FEATURE_NAMES, FEATURE_SOURCES, SOURCES
from esg_leads.operators.lead_records import LeadRows, detection_alert, lead_records, window_alert
from esg_leads.operators.model_lifecycle import ModelGovernor
from esg_leads.operators.prior import prior_many, prior_probability
from esg_leads.operators.tiers import tier_of
from esg_leads.operators.warm_start import warm_start
from esg_leads.schemas.keys import output_key
from esg_leads.schemas.records import (
    Emitted,
    FeatureVector,
    Ingested,
    InvestorNotice,
    LabelledExample,
    Scored,
)
from esg_leads.schemas.settings import ScoringSettings, Settings

MODEL_NAME = "bagged-logreg"
_SOURCE_MATRIX = np.array(
    [[1.0 if FEATURE_SOURCES[f] == s else 0.0 for s in SOURCES] for f in FEATURE_NAMES]
)
#: How the prior's terms spread over the data sources (property_epc, certifications,
#: climate_risk, engagement, profile): intent is engagement, ESG alignment is
#: property data, completeness and consent are profile.
_PRIOR_SHARES = np.array([0.15, 0.09, 0.06, 0.6, 0.1])
_COMPLETENESS = FEATURE_NAMES.index("profile_completeness")
_CONTACTABLE = FEATURE_NAMES.index("contactable")
_ENG_30D = FEATURE_NAMES.index("eng_30d")
_FRESHNESS = FEATURE_NAMES.index("data_freshness")


def uses_global_prior(settings: Settings, tenant: str) -> bool:
    """Whether ``tenant``'s scores may use the global model: an explicit opt-in.

    >>> uses_global_prior(Settings.model_validate({"tenants": {"acme": {}}}), "acme")
    False
    >>> uses_global_prior(Settings.model_validate({"tenants": {"acme": {"use_global_prior": True}}}), "acme")
    True
    """
    cfg = settings.tenants.get(tenant)
    return bool(settings.scoring.global_model and cfg is not None and cfg.use_global_prior)


def global_contributors(settings: Settings) -> frozenset[str]:
    """The tenants whose labels may train the global model (explicit opt-in)."""
    if not settings.scoring.global_model:
        return frozenset()
    return frozenset(t for t, cfg in settings.tenants.items() if cfg.contribute_to_global)


def global_model_active(settings: Settings) -> bool:
    """Whether the global model has anyone to learn from and anyone to serve."""
    return bool(global_contributors(settings)) and any(
        uses_global_prior(settings, t) for t in settings.tenants)


def tenant_seed(seed: int, tenant: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(tenant.encode())) % (2**31)


def make_model(settings: ScoringSettings, seed: int) -> BaggedLogisticRegression:
    return BaggedLogisticRegression(settings.ensemble_size, settings.learning_rate,
                                    settings.l2, seed=seed)


class ModelFactory:
    """Builds a tenant's model for a registry generation (picklable, unlike a lambda)."""

    def __init__(self, settings: ScoringSettings, seed: int) -> None:
        self.settings = settings
        self.seed = seed

    def __call__(self, generation: int) -> BaggedLogisticRegression:
        return make_model(self.settings, self.seed + generation)


def _logit(p: np.ndarray) -> np.ndarray:
    # Ufuncs directly: np.clip's Python layers cost more than the maths on a few rows.
    p = np.minimum(np.maximum(p, 1e-6), 1 - 1e-6)
    return np.log(p / (1 - p))


def _row_means(a: np.ndarray) -> np.ndarray:
    """``a.mean(axis=1)``, bit for bit, without NumPy's Python wrapper (a live close
    scores one or two leads, where that wrapper costs more than the sums)."""
    return np.add.reduce(a, axis=1) / a.shape[1]


def _row_variances(a: np.ndarray) -> np.ndarray:
    """``a.std(axis=1) ** 2``, bit for bit (the same steps as NumPy's ``_var``)."""
    deviations = a - np.add.reduce(a, axis=1, keepdims=True) / a.shape[1]
    return np.sqrt(np.add.reduce(np.square(deviations), axis=1) / a.shape[1]) ** 2


@dataclass(slots=True)
class _Calibrated:
    """The calibrator-dependent part of a run of rows, from row ``start`` on."""

    start: int
    p: np.ndarray
    variance: np.ndarray
    intervals: LeadRows

    def rows(self, at: slice) -> LeadRows:
        """The rows of one group (``at``: relative to ``start``)."""
        i = self.intervals
        return LeadRows(i.p[at], i.low[at], i.high[at], i.tiers[at])


def _horizon_labels(settings: Settings) -> tuple[HorizonLabeller, RollingCalibration]:
    s = settings.scoring
    salt = settings.contact_hash_salt.get_secret_value().encode()
    return (HorizonLabeller(s.horizon.total_seconds(), salt=salt),
            RollingCalibration(s.calibration_window))


class TenantScorer:
    """Scoring state of one tenant (its model registry, calibrator, drift, quality)."""

    #: The registry version scoring started from (a class default, so that snapshots
    #: taken before warm starts existed restore without it).
    origin: str | None = None
    #: PSI detectors in event time (None: drift off, or a snapshot from before them).
    window_drift: WindowDrift | None = None

    def __init__(self, tenant: str, settings: Settings) -> None:
        s = settings.scoring
        self.tenant = tenant
        self.s = s
        seed = tenant_seed(s.seed, tenant)
        self.registry = ModelRegistry(ModelFactory(s, seed))
        #: Opt-in (``tenants.<id>.use_global_prior``); re-read from the settings on resume.
        self.use_global = uses_global_prior(settings, tenant)
        self.global_model: BaggedLogisticRegression | None = None
        self.global_labels = 0
        self.calibrator = OnlineCalibrator(bins=s.calibration_bins,
                                           decay=1 - 1 / s.calibration_memory)
        # The calibrator learns each score's horizon outcome, matched point in time.
        self.horizon, self.calibration_error = _horizon_labels(settings)
        d = s.drift
        self.drift = DriftMonitor(d.features if d.enabled else (), d.error_delta, d.feature_delta,
                                  d.min_effect, d.error_min_effect, d.warmup, d.confirm)
        if d.enabled:
            self.window_drift = WindowDrift(
                tuple(f"feature:{n}" for n in d.window_features) + (("score",) if d.window_score else ()),
                d.window_recent_hours, d.window_reference_hours, d.window_cadence_hours,
                min_psi=d.window_min_psi, min_subjects=d.window_min_subjects)
        self.quality = RollingQuality(500)
        self.labels = 0
        self.counts: Counter[tuple[str, str]] = Counter()
        self.gauges: dict[tuple[str, str], float] = {}
        self._z = NormalDist().inv_cdf(0.5 + s.interval_level / 2)
        warm_start(self, settings)  # from registry.models, if the tenant has one
        #: Champion/challenger: shadow, canary, promotion, rollback, commands.
        self.governor = ModelGovernor(tenant, settings)

    def __setstate__(self, state: dict) -> None:
        # A snapshot from before the opt-in: the global model was used when present.
        state.setdefault("use_global", True)
        self.__dict__.update(state)

    @classmethod
    def restore(cls, state: object, settings: Settings) -> TenantScorer:
        """The operator for a resumed snapshot, with the opt-in of the current settings:
        a tenant that has opted out since is isolated from its first score after resume."""
        if not isinstance(state, TenantScorer):
            raise TypeError(f"cannot resume the scoring step from a {type(state).__name__}")
        state.use_global = uses_global_prior(settings, state.tenant)
        if getattr(state, "governor", None) is None:  # a snapshot from before governance
            state.governor = ModelGovernor(state.tenant, settings)
        state.governor.configure(settings)
        if "horizon" not in state.__dict__:  # a snapshot from before the horizon labels
            state.horizon, state.calibration_error = _horizon_labels(settings)
        if not state.use_global:
            state.global_model, state.global_labels = None, 0
        return state

    def process(self, items: list, now: datetime) -> list[Scored | dict]:
        """Score feature vectors (in vectorised runs), learn labels, take global updates.

        Arrival order is kept: a label that arrives between two vectors is learned
        before the second is scored.
        """
        out: list[Scored | dict] = []
        pending: list[FeatureVector] = []
        for item in items:
            if isinstance(item, FeatureVector):
                pending.append(item)
                continue
            if pending:
                self._flush(pending, now, out)
                pending = []
            if isinstance(item, LabelledExample):
                out.extend(self.learn(item, now))
            elif type(item) is Ingested:  # an ops.control command (signature checked)
                out.extend(self.governor.command(self, item, now))
            elif type(item) is InvestorNotice:  # an erasure: its kept labels go
                self.governor.forget(item.investor_id)
                # and its shadow scores: deleted by this step, which made them, so the
                # tombstone leaves after them (from the lifecycle it could overtake them).
                out.append(Emitted("tombstone", output_key(item.tenant, item.investor_id),
                                   None, "leads.shadow"))
            else:
                self.set_global(item.model, item.labels)
        if pending:
            self._flush(pending, now, out)
        return out

    def process_positions(self, groups: list[list], now: datetime) -> list[list[Scored | dict]]:
        """``process`` of each input position's items in turn, one result list per position.

        A run of positions that hold only feature vectors is scored in one vectorised
        pass (:meth:`score_groups`) while the champion alone scores: the same leads as
        position by position (each row's arithmetic is its own), without NumPy's per-call
        cost for every one or two leads a position closes.
        """
        results: list[list[Scored | dict]] = []
        i = 0
        while i < len(groups):
            j = i
            while j < len(groups) and groups[j] and all(type(x) is FeatureVector for x in groups[j]):
                j += 1
            if j - i < 2 or not self.governor.champion_alone():
                results.append(self.process(groups[i], now))
                i += 1
                continue
            serving = self._serving()
            for records, alerts in self.score_groups(groups[i:j], now):
                governed = self.governor.scored(self, now)
                results.append(self._count(records, alerts, governed))
                i += 1
                # A drift request started a retraining: its challenger shadows (and may
                # canary) the next positions, or replaced the champion at once (its test
                # already decided): either way the run's arithmetic is stale.
                if governed or not self.governor.champion_alone() or self._serving() != serving:
                    break
        return results

    def _serving(self) -> tuple:
        """What a score reads, by identity: it may not change within a run of positions
        scored together (the calibrator may learn: see :meth:`score_groups`)."""
        return (id(self.registry.champion), self.registry.generation, id(self.calibrator),
                self.labels, id(self.global_model), self.global_labels, self.use_global)

    def _flush(self, vectors: list[FeatureVector], now: datetime, out: list[Scored | dict]) -> None:
        out.extend(self._count(*self.governor.score(self, vectors, now)))

    def _count(self, records: list[Scored], alerts: list[dict], governed: list) -> list[Scored | dict]:
        for scored in records:
            self.counts[("leads", scored.record["tier"])] += 1
        for alert in alerts:
            self.counts[("alerts", alert["kind"])] += 1
        return [*records, *alerts, *governed]

    # -------------------------------------------------------------- blend

    def blend_weights(self) -> tuple[float, float]:
        """(prior weight, tenant weight within the model part)."""
        s = self.s
        global_n = self.global_labels if (self.use_global and self.global_model) else 0
        w_prior = s.prior_labels / (s.prior_labels + self.labels + 0.5 * global_n)
        if global_n:
            w_tenant = self.labels / (self.labels + s.tenant_labels_for_trust)
        else:
            w_tenant = 1.0
        return w_prior, w_tenant

    def _members(self, X: np.ndarray, intent: np.ndarray, alignment: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Blended member probabilities, blended contributions and data-source weights.

        ``X`` holds one feature vector per row, columns in ``FEATURE_NAMES`` order.
        """
        w_prior, w_tenant = self.blend_weights()
        model = self.registry.champion
        Z = model.standardise(X, FEATURE_NAMES)
        members = probabilities(model.member_logits_many(Z, FEATURE_NAMES)) * w_tenant
        contrib = model.contributions_many(Z, FEATURE_NAMES) * w_tenant
        if w_tenant < 1.0:
            g = self.global_model
            Zg = g.standardise(X, FEATURE_NAMES)
            members += probabilities(g.member_logits_many(Zg, FEATURE_NAMES)) * (1 - w_tenant)
            contrib += g.contributions_many(Zg, FEATURE_NAMES) * (1 - w_tenant)
        prior = prior_many(X[:, _COMPLETENESS], X[:, _CONTACTABLE], intent, alignment)
        members = w_prior * prior[:, None] + (1 - w_prior) * members
        # Data-source shares: the model's |contributions| plus the prior's terms.
        model_sources = np.einsum("ij,jk->ik", np.abs(contrib), _SOURCE_MATRIX)  # row by row (not BLAS)
        totals = np.add.reduce(model_sources, axis=1, keepdims=True)
        model_sources = np.divide(model_sources, totals, out=np.full_like(model_sources, 0.2),
                                  where=totals > 0)
        sources = w_prior * _PRIOR_SHARES + (1 - w_prior) * model_sources
        return members, contrib * (1 - w_prior), sources

    # ------------------------------------------------------------ scoring

    def score_many(self, vectors: list[FeatureVector], now: datetime) -> tuple[list[Scored], list[dict]]:
        """Scored leads for ``vectors`` (one vectorised pass), and drift alerts they raised."""
        if not vectors:
            return [], []
        return next(self.score_groups([vectors], now))

    def score_groups(self, groups: list[list[FeatureVector]], now: datetime
                     ) -> Iterator[tuple[list[Scored], list[dict]]]:
        """``score_many`` of each group in turn, its arithmetic done for all groups at once.

        Each group gets exactly what ``score_many(group)`` gives after the groups before
        it: every row's arithmetic is its own (element-wise, or ``einsum`` row by row),
        nothing scoring reads changes while scoring but the calibrator — it learns when a
        group's scores let older ones' horizons pass — and from the group after such a
        change on, the calibrated part is computed again. A generator: a group's state
        changes (horizon, calibrator, detectors) happen when it is taken, so the caller
        may stop after any group (a drift request that starts a challenger changes how
        the next groups are scored) with nothing of the rest applied.
        """
        vectors = [v for group in groups for v in group]
        X = np.array([v.values for v in vectors], dtype=float)
        intent = np.array([v.intent for v in vectors])
        alignment = np.array([v.esg_alignment for v in vectors])
        members, contrib, sources = self._members(X, intent, alignment)
        # Each score waits for its horizon outcome with its inputs, to be re-scored then
        # (little-endian float32s: a snapshot holding them reads the same on any host).
        payloads = [row.tobytes() for row in
                    np.column_stack([X, intent, alignment]).astype("<f4")]
        order = np.argsort(contrib, axis=1, kind="stable").tolist()
        shares = (sources / np.add.reduce(sources, axis=1, keepdims=True)).round(4).tolist()
        contrib_rows = contrib.round(4).tolist()
        tail, lo = None, 0
        for group in groups:
            hi = lo + len(group)
            if tail is None:  # the calibrated part, from this group on
                tail = self._calibrated(members[lo:], X[lo:], lo)
            at = slice(lo - tail.start, hi - tail.start)
            if self.learn_calibration(self.horizon.record(
                    [v.investor_id for v in group], [v.as_of.timestamp() for v in group],
                    payloads[lo:hi], tail.p[at].tolist())):
                following = None  # the calibrator learned: re-read from the next group
            else:
                following = tail
            # A stale signal source: its facts blend to reference values, their share of the
            # evidence moves to the prior and widens the interval (operators/degradation.py).
            degraded = assess(group, X[lo:hi], sources[lo:hi])
            if degraded is None:
                rows = tail.rows(at)
                rows.order, rows.contrib, rows.shares = order[lo:hi], contrib_rows[lo:hi], shares[lo:hi]
            else:
                rows = self._degraded_rows(degraded, members[lo:hi], contrib[lo:hi], X[lo:hi],
                                           intent[lo:hi], tail.variance[at])
                rows.shares = shares[lo:hi]
            yield self._leads(group, rows, degraded, now)
            tail, lo = following, hi

    def _calibrated(self, members: np.ndarray, X: np.ndarray, start: int) -> _Calibrated:
        """Probability, interval and tier of rows from ``start`` on, by the calibrator now.

        The interval, on the logit scale: members' disagreement, thin model evidence,
        what behaviour cannot tell (the floor), thin investor history, stale ESG data.
        """
        s = self.s
        calibrated = self.calibrator.transform_many(members.ravel()).reshape(members.shape)
        p = self.calibrator.transform_many(_row_means(members))
        evidence = self.labels + 0.5 * (self.global_labels if (self.use_global and self.global_model) else 0)
        events = np.expm1(X[:, _ENG_30D])
        stale = 1.0 - X[:, _FRESHNESS]
        variance = (_row_variances(_logit(calibrated)) + 1.0 / (4.0 + evidence * p * (1 - p))
                    + s.interval_floor ** 2 + 0.6 / (1.0 + events) + 0.5 * stale * stale)
        return _Calibrated(start, p, variance, self._interval_rows(p, variance))

    def _interval_rows(self, p: np.ndarray, variance: np.ndarray) -> LeadRows:
        centre, half = _logit(p), self._z * np.sqrt(variance)
        low, high = 1 / (1 + np.exp(half - centre)), 1 / (1 + np.exp(-(centre + half)))
        return LeadRows(p.round(6).tolist(), low.round(6).tolist(), high.round(6).tolist(),
                     [tier_of(pi, self.s) for pi in p.tolist()])

    def _degraded_rows(self, degraded: Degradation, members: np.ndarray, contrib: np.ndarray,
                       X: np.ndarray, intent: np.ndarray, variance: np.ndarray) -> LeadRows:
        """A group with a stale source: members, probability and interval again, from its
        degraded facts and by the calibrator as it is after the group's own learning."""
        alignment = degraded.alignment
        members, contrib, _ = self._members(degraded.X, intent, alignment)
        members = degraded.to_prior(members, prior_many(
            X[:, _COMPLETENESS], X[:, _CONTACTABLE], intent, alignment))
        contrib = contrib * (1.0 - degraded.s[:, None])
        p = self.calibrator.transform_many(_row_means(members))
        rows = self._interval_rows(p, variance + degraded.variance)
        rows.order = np.argsort(contrib, axis=1, kind="stable").tolist()
        rows.contrib = contrib.round(4).tolist()
        return rows

    def _leads(self, vectors: list[FeatureVector], rows: LeadRows, degraded: Degradation | None,
               now: datetime) -> tuple[list[Scored], list[dict]]:
        """The lead records of one group, and the alerts their drift detectors raised."""
        w_prior, w_tenant = self.blend_weights()
        model_info = {
            "model_version": f"{MODEL_NAME}:{self.tenant}:g{self.registry.generation}:n{self.labels}"
                             + (f":from-{self.origin}" if self.origin else ""),
            "feature_set_version": vectors[0].feature_set_version,
            "tenant_labels": self.labels,
            "prior_weight": round(w_prior, 4),
            "global_weight": round((1 - w_prior) * (1 - w_tenant), 4),
        }
        records = lead_records(vectors, rows, degraded, model_info, w_prior > 0.2,
                               self.s.interval_level, now)
        alerts = []
        for vector, pi in zip(vectors, rows.p, strict=True):
            f, as_of = vector.features, vector.as_of
            for detection in self.drift.update_features(f):
                alerts.append(self.alert("drift_detected", detection, as_of, now))
            if self.window_drift is not None:
                watched = {f"feature:{n}": f[n] for n in self.s.drift.window_features if n in f}
                watched["score"] = pi
                for found in self.window_drift.update(as_of.timestamp(), watched):
                    alerts.append(self.window_alert(found, now))
                    # What investors do has changed: a retraining challenger starts now
                    # (operators/model_lifecycle.py), rather than after enough labels show
                    # the old model worse (labels come weeks after behaviour, few per tenant).
                    self.governor.drift_detected(found.detector, found.subject,
                                                 datetime.fromtimestamp(found.at_s, tz=timezone.utc))
        return records, alerts

    # ----------------------------------------------------------- learning

    def learn(self, example: LabelledExample, now: datetime) -> list[dict]:
        """Test-then-train on one label; returns alerts (drift, retraining, promotion)."""
        p_raw = self._raw_probability_one(example.features)
        p = self.calibrator.transform(p_raw)
        judged = self.governor.judge(self, example)  # shadow models, before anyone learns
        y = example.label
        self.quality.add(p, y)
        pairs = self.horizon.resolve(example.investor_id, example.outcome_time.timestamp(), y)
        if pairs:
            self.learn_calibration(pairs)
        else:  # no waiting score (scored before a resume from an older snapshot): the
            self._learn_pairs([p_raw], [p], [y])  # label's own vector is the pair known
        self.registry.learn_one(example.features.features, y)
        self.labels += 1
        if self.labels % 50 == 0:  # rolling quality, for the metrics
            loss, auc = self.quality.log_loss(), self.quality.auc()
            if loss is not None:
                self.gauges[("model_log_loss", self.tenant)] = loss
            if auc is not None:
                self.gauges[("model_auc", self.tenant)] = auc
        alerts = []
        when = example.outcome_time
        detections = self.drift.update_error((float(y) - p) ** 2) if self.s.drift.enabled else []
        for detection in detections:
            alerts.append(self.alert("drift_detected", detection, when, now))
            self.governor.drift_detected(detection.detector, detection.subject, when)
        for alert in alerts:
            self.counts[("alerts", alert["kind"])] += 1
        return alerts + self.governor.settle(self, example, p, judged, now)

    def learn_calibration(self, pairs: list[tuple[bytes, float, bool]]) -> bool:
        """Teach the calibrator scores whose horizon outcome is now known, each re-scored
        by the current model and prior blend (the map it will be applied to); whether
        there were any."""
        if not pairs:
            return False
        rows = np.frombuffer(b"".join(row for row, _, _ in pairs), dtype="<f4")
        rows = rows.reshape(len(pairs), -1).astype(float)
        members, _, _ = self._members(rows[:, :-2], rows[:, -2], rows[:, -1])
        self._learn_pairs(_row_means(members).tolist(), [p for _, p, _ in pairs],
                          [y for _, _, y in pairs])
        return True

    def _learn_pairs(self, raw: list[float], published: list[float], labels: list[bool]) -> None:
        """Learn (raw, label); measure the calibration of what was published for them
        (out of sample: published before the label was known)."""
        for r, p, y in zip(raw, published, labels, strict=True):
            self.calibrator.learn_one(r, y)
            self.calibration_error.add(p, y)
        self.counts[("calibration_pairs", self.tenant)] += len(raw)
        ece = self.calibration_error.ece()
        if ece is not None and len(self.calibration_error) >= 100:
            self.gauges[("model_ece", self.tenant)] = ece

    def _raw_probability_one(self, vector: FeatureVector) -> float:
        """The blended, uncalibrated probability of one vector (River's dict path).

        Equals the mean of :meth:`_members`' row for the same vector; used for labels,
        which come one at a time, where NumPy's per-call overhead would dominate.
        """
        w_prior, w_tenant = self.blend_weights()
        x = vector.features
        p_model = w_tenant * self.registry.champion.predict_proba_one(x)[True]
        if w_tenant < 1.0:
            p_model += (1 - w_tenant) * self.global_model.predict_proba_one(x)[True]
        prior, _ = prior_probability(x, vector.intent, vector.esg_alignment)
        return w_prior * prior + (1 - w_prior) * p_model

    def set_global(self, model_bytes: bytes, labels: int) -> None:
        if not self.use_global:  # not opted in: never even unpickle another tenant's model
            return
        self.global_model = pickle.loads(model_bytes)
        self.global_labels = labels

    def window_alert(self, found: WindowDetection, now: datetime) -> dict:
        return window_alert(self.tenant, self.labels, self.registry.generation, found, now)

    def alert(self, kind: str, detection: Detection, when: datetime, now: datetime) -> dict:
        return detection_alert(self.tenant, self.labels, self.registry.generation, kind,
                               detection, when, now)


class GlobalLearner:
    """The cross-tenant fallback model: learns from the labels of the tenants that opted
    in to contribute and publishes a copy (for the tenants that opted in to use it)
    every ``publish_every`` labels."""

    def __init__(self, settings: Settings, publish_every: int | None = None) -> None:
        self.model = make_model(settings.scoring, tenant_seed(settings.scoring.seed, "*global*"))
        self.contributors = global_contributors(settings)
        self.publish_every = publish_every or settings.scoring.global_publish_every
        self.labels = 0

    @classmethod
    def restore(cls, state: object, settings: Settings) -> GlobalLearner:
        """The operator for a resumed snapshot, with the contributors of the current
        settings: a tenant that withdrew stops contributing at once (what the model
        already learned from it stays in it: start a new recovery directory to forget)."""
        if not isinstance(state, GlobalLearner):
            raise TypeError(f"cannot resume the global model from a {type(state).__name__}")
        state.contributors = global_contributors(settings)
        return state

    def process(self, items: list[LabelledExample], now: datetime) -> list[tuple[bytes, int]]:
        """Learn a batch of labels; returns the model updates to broadcast, if any."""
        return [u for u in (self.learn(e) for e in items) if u is not None]

    def learn(self, example: LabelledExample) -> tuple[bytes, int] | None:
        if example.tenant not in self.contributors:
            return None
        self.model.learn_one(example.features.features, example.label)
        self.labels += 1
        if self.labels % self.publish_every == 0:
            return pickle.dumps(self.model, protocol=pickle.HIGHEST_PROTOCOL), self.labels
        return None
