"""Settings of a run, as one validated model.

Precedence, lowest first: defaults < the config file (TOML) < ``ESG_LEADS_*``
environment variables (and ``ESG_LEADS_*_FILE`` files) < command-line flags.
``flows.config`` does the layering (pydantic-settings); this module only says what is
valid. Durations accept seconds or ISO 8601 (``"PT1H"``).

>>> Settings().windows.length
datetime.timedelta(seconds=3600)
>>> Settings.model_validate({"windows": {"length": "PT0S"}})
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Settings
windows.length
  Value error, must be positive [type=value_error, input_value='PT0S', input_type=str]
    For further information visit ...
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from esg_leads.schemas.common import TenantId


def _positive(value: timedelta) -> timedelta:
    if value <= timedelta(0):
        raise ValueError("must be positive")
    return value


def _not_negative(value: timedelta) -> timedelta:
    if value < timedelta(0):
        raise ValueError("must not be negative")
    return value


#: RFC 2104 advises HMAC keys no shorter than the hash output (32 bytes for SHA-256);
#: a short key ("12345", a typo'd variable) would make forged decisions guessable.
MIN_SIGNING_KEY_CHARS = 32


def _signing_key(value: SecretStr) -> SecretStr:
    if len(value.get_secret_value()) < MIN_SIGNING_KEY_CHARS:
        # Never echo the value: this message reaches logs and the terminal.
        raise ValueError(f"must be at least {MIN_SIGNING_KEY_CHARS} characters")
    return value


Positive = Annotated[timedelta, AfterValidator(_positive)]
NotNegative = Annotated[timedelta, AfterValidator(_not_negative)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TenantSettings(Section):
    """Per-tenant business limits."""

    #: Tickets above this size always go to a person before handoff.
    review_ticket_limit_eur: Annotated[float, Field(gt=0)] = 50_000_000
    #: Whether this tenant's labels may train the cross-tenant global model. Off by
    #: default: a tenant's outcomes are its own data, shared only by explicit opt-in.
    contribute_to_global: bool = False
    #: Whether this tenant's scores may lean on the cross-tenant global model (trained
    #: on the contributing tenants' labels) while it has few labels of its own. Off by
    #: default: a tenant that has not opted in learns only from its own labels, and
    #: nothing another tenant sends can change its decisions.
    use_global_prior: bool = False
    #: The fund's own SFDR classification and UK SDR label, if it has them: the only
    #: basis on which outreach may mention either (see the anti-greenwashing check).
    sfdr_classification: Literal["article_6", "article_8", "article_9"] | None = None
    uk_sdr_label: Literal["sustainability_focus", "sustainability_improvers",
                          "sustainability_impact", "sustainability_mixed_goals"] | None = None
    #: Who may decide this tenant's review cases (``lead.review-decisions``); a decision
    #: from anyone else is dead-lettered as ``unauthorized``.
    reviewers: tuple[Annotated[str, Field(min_length=1, max_length=64)], ...] = ()
    #: HMAC-SHA256 key that review decisions of this tenant must be signed with
    #: (``ESG_LEADS_TENANTS__<ID>__REVIEW_SIGNING_KEY``), used as its UTF-8 bytes; at
    #: least 32 characters. ``None``: no decision is accepted.
    review_signing_key: Annotated[SecretStr, AfterValidator(_signing_key)] | None = None
    #: HMAC-SHA256 key that this tenant's inbound webhooks (``esg-leads webhooks``) are
    #: signed with (``ESG_LEADS_TENANTS__<ID>__WEBHOOK_SECRET``); at least 32 characters.
    #: ``None``: the tenant's webhooks are refused (401).
    webhook_secret: Annotated[SecretStr, AfterValidator(_signing_key)] | None = None
    #: HMAC-SHA256 key that this tenant's erasure requests must be signed with
    #: (``ESG_LEADS_TENANTS__<ID>__ERASURE_SIGNING_KEY``); at least 32 characters. ``None``:
    #: unsigned requests are accepted (``run`` warns); set it once the privacy desk signs.
    erasure_signing_key: Annotated[SecretStr, AfterValidator(_signing_key)] | None = None
    #: HMAC-SHA256 key that this tenant's model commands on ``ops.control`` (``esg-leads
    #: models promote|pin|unpin|rollback``) must be signed with
    #: (``ESG_LEADS_TENANTS__<ID>__CONTROL_SIGNING_KEY``); at least 32 characters.
    #: ``None``: no command is accepted (each is an ``unauthorized`` dead letter).
    control_signing_key: Annotated[SecretStr, AfterValidator(_signing_key)] | None = None


class WindowSettings(Section):
    length: Positive = timedelta(hours=1)
    allowed_lateness: NotNegative = timedelta(minutes=15)
    #: Investor windows are grouped into this many keys per tenant (see DESIGN notes).
    shards_per_tenant: Annotated[int, Field(ge=1, le=4096)] = 16
    #: Shift each investor's windows by a stable phase, so that closes (and the scoring
    #: they start) spread over the window length instead of all at once.
    stagger: bool = True
    #: Phases are whole multiples of this step (plus a per-tenant offset within one
    #: step), so a tenant's closes come in small groups at most once per step of event
    #: time. Each group goes through the investor, scoring and lifecycle steps as one
    #: batch: a longer step costs less per lead and makes bigger groups (measured in
    #: ``bench/kafka_latency.py`` at 5,000 events/s: 1 ms → 71-80 % of a core, 25 ms →
    #: 58-71 %, 50 ms → 59-66 % with p50 +1 ms, 100 ms → 58-59 % with p50 +2.5 ms; p99
    #: the same within this machine's noise).
    stagger_step: Positive = timedelta(milliseconds=25)
    #: Live runs only: once a tenant has sent nothing for this long (wall clock), move
    #: its event clock on with the wall clock, so its last windows close instead of
    #: waiting for its next event. ``None``: wait for the next event. Keep it well above
    #: the longest input lag you expect (a tenant whose input is merely behind would
    #: see its windows closed early, and the events that arrive after them dead-lettered
    #: as late). Replays ignore it: their outcome must not depend on how fast they run.
    idle_close_after: Positive | None = None


class IngestSettings(Section):
    #: An event whose ``event_time`` is further than this ahead of its ingest time (the
    #: Kafka message timestamp; in a replay the recorded one) is dead-lettered as
    #: ``future_event_time``: it must never move a clock.
    max_future_skew: NotNegative = timedelta(hours=1)


class DlqSettings(Section):
    #: A dead letter keeps at most this many bytes of the original value (a prefix, with
    #: the original length and SHA-256), so a dead letter always fits the producer.
    max_value_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * 1024)] = 256 * 1024
    #: The key store sealing dead letters about investors (crypto-shredding, see
    #: ``operators/erasure.py``): an SQLite file. ``None``: ``dlq-keys.sqlite`` in
    #: ``recovery.directory``, or, without recovery, in memory (values sealed by that
    #: process cannot be opened once it stops). Replays never use it: they keep their own
    #: in their output directory (a replay must not shred a deployment's keys).
    key_store: str | None = None


class RetentionSettings(Section):
    #: Audit files older than this many days (by their date partition) are deleted;
    #: ``None`` keeps them.
    audit_days: Annotated[int, Field(ge=1, le=36_500)] | None = None
    #: The same for dead-letter files written by replays.
    dlq_days: Annotated[int, Field(ge=1, le=36_500)] | None = None


class DedupSettings(Section):
    #: How long (event time) an event_id is remembered to recognise redelivery.
    horizon: Positive = timedelta(days=3)


class FeatureSettings(Section):
    #: Half-lives of the decayed engagement counters: short, medium, long (the
    #: features ``eng_1d``, ``eng_7d``, ``eng_30d`` are named after the defaults).
    half_lives: tuple[Positive, Positive, Positive] = (
        timedelta(days=1), timedelta(days=7), timedelta(days=30))
    #: ESG data older than this counts as stale.
    stale_after: Positive = timedelta(days=365)
    #: Re-score an investor after these silences (event time): a lead cools down when
    #: nothing happens, and sales should see that before they act.
    rescore_after: tuple[Positive, ...] = (timedelta(days=3),)
    #: Climate-risk score (0-100) at or below which a property counts as low-risk.
    low_climate_risk_max: Annotated[int, Field(ge=0, le=100)] = 30


class DriftSettings(Section):
    enabled: bool = True
    #: ADWIN confidence on the model's error stream (smaller: fewer false alarms).
    error_delta: Annotated[float, Field(gt=0, lt=1)] = 0.002
    #: ADWIN confidence on watched features.
    feature_delta: Annotated[float, Field(gt=0, lt=1)] = 1e-5
    #: A feature change smaller than this many standard deviations is not reported.
    min_effect: Annotated[float, Field(ge=0)] = 0.25
    #: The same for a rise of the model's squared error.
    error_min_effect: Annotated[float, Field(ge=0)] = 0.1
    #: Observations after a detector fires that decide whether the change is material.
    confirm: Annotated[int, Field(ge=1)] = 200
    #: Observations before feature detectors may fire (the stream's warm-up is not drift).
    warmup: Annotated[int, Field(ge=0)] = 2000
    #: Features watched for drift.
    features: tuple[str, ...] = ("esg_content_lift", "depth_per_window", "stated_esg")
    #: Event-time window detectors (PSI, online_models.window_drift) on these features
    #: and, if ``window_score``, on the published probability.
    window_features: tuple[str, ...] = ("esg_content_lift", "certified_lift", "high_epc_lift",
                                        "esg_report_rate", "esg_reports_30d", "dwell_per_view",
                                        "eng_1d")
    window_score: bool = True
    #: The recent window compared with the rolling reference before it, and how often.
    window_recent_hours: Annotated[float, Field(gt=0)] = 24.0
    window_reference_hours: Annotated[float, Field(gt=0)] = 168.0
    window_cadence_hours: Annotated[float, Field(gt=0)] = 6.0
    #: Smallest bias-corrected PSI of a subject that counts as shifted.
    window_min_psi: Annotated[float, Field(gt=0)] = 0.25
    #: Subjects that must shift at one tick for an alert (one alone is usually noise).
    window_min_subjects: Annotated[int, Field(ge=1)] = 3

    @model_validator(mode="after")
    def _cadence_fits(self) -> DriftSettings:
        if self.window_cadence_hours > self.window_recent_hours:
            raise ValueError("drift.window_cadence_hours must not exceed window_recent_hours")
        return self


class ScoringSettings(Section):
    model: Literal["logistic", "logistic_bagged"] = "logistic_bagged"
    #: Members of the online bagged ensemble that gives the confidence interval.
    ensemble_size: Annotated[int, Field(ge=2, le=64)] = 8
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.003
    l2: Annotated[float, Field(ge=0, le=1)] = 1e-3
    #: Tenant labels after which the cold-start prior has (almost) no weight.
    prior_labels: Annotated[int, Field(ge=1)] = 300
    #: Tenant labels after which the tenant model outweighs the global model.
    tenant_labels_for_trust: Annotated[int, Field(ge=1)] = 5000
    interval_level: Annotated[float, Field(gt=0.5, lt=1)] = 0.9
    #: Spread (logit scale) the features leave unexplained whatever the labels: an
    #: investor's true propensity varies around any estimate from behaviour. Set from
    #: the interval's coverage of the true probability in bench/model_quality.py.
    interval_floor: Annotated[float, Field(ge=0, le=5)] = 0.55
    #: Probability thresholds of the tiers.
    hot: Fraction = 0.5
    warm: Fraction = 0.25
    nurture: Fraction = 0.1
    calibration_bins: Annotated[int, Field(ge=5, le=100)] = 20
    #: The published probability is P(conversion within this long of the score's event
    #: time): the calibrator learns each score's outcome over this horizon.
    horizon: Positive = timedelta(days=90)
    #: Matched (score, outcome) pairs the calibrator remembers (its counts decay by
    #: ``1 - 1/calibration_memory`` a pair): longer is steadier, shorter follows drift.
    calibration_memory: Annotated[int, Field(ge=100, le=10_000_000)] = 20_000
    #: Pairs in the rolling calibration error (``model_ece`` metric, summary).
    calibration_window: Annotated[int, Field(ge=100, le=1_000_000)] = 5_000
    seed: int = 42
    #: Master switch of the cross-tenant global model. Even when on, the model only
    #: exists if some tenant sets ``contribute_to_global`` and some tenant sets
    #: ``use_global_prior``; it learns only from the first and serves only the second.
    global_model: bool = True
    #: The global model is sent to the tenants that use it after every this many labels.
    global_publish_every: Annotated[int, Field(ge=1, le=1_000_000)] = 50
    drift: DriftSettings = DriftSettings()

    @model_validator(mode="after")
    def _tiers_ordered(self) -> ScoringSettings:
        if not self.hot > self.warm > self.nurture:
            raise ValueError("tier thresholds must satisfy hot > warm > nurture")
        return self


class LifecycleSettings(Section):
    #: A scored lead is re-emitted only when its score moves by at least this much.
    material_score_change: Annotated[int, Field(ge=0, le=100)] = 5
    qualification_threshold: Fraction = 0.5
    #: Half-width of the ambiguous band around the threshold, routed to review.
    review_band: Fraction = 0.05
    #: Intervals wider than this go to review instead of handoff.
    max_interval_width: Fraction = 0.5
    #: A lead whose only review reasons are the model's uncertainty (ambiguous score,
    #: wide interval) stays ``planned`` this long, while outreach gathers evidence,
    #: before a person is asked; ``0s``: ask at once.
    uncertain_review_after: timedelta = timedelta(days=7)

    @field_validator("uncertain_review_after")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("uncertain_review_after must not be negative")
        return value


class KafkaSettings(Section):
    bootstrap_servers: str = "127.0.0.1:9092"
    #: Extra librdkafka client settings, e.g. ``security.protocol``, ``sasl.*``.
    client: dict[str, str | int | bool] = {}
    #: Secrets (``sasl.password``, ``ssl.key.password``) kept apart so they are masked.
    secrets: dict[str, SecretStr] = {}
    #: Where a run starts reading when it has no resume state (no recovery directory,
    #: or a recovery directory's first run). Positions are never taken from the
    #: consumer group: see ``group_id``.
    starting_offset: Literal["beginning", "end"] = "beginning"
    #: Consumer group the consumed offsets are committed to, after the snapshot that
    #: covers them (or every few seconds without recovery), so that lag tools
    #: (``kafka-consumer-groups --describe``, Burrow, ...) see progress. A progress
    #: report only: a run resumes from its own snapshot, whose state goes with it.
    group_id: Annotated[str, Field(min_length=1, max_length=255)] = "esg-leads"
    #: When a stored position is no longer on the broker (out of range: retention, a
    #: broker that lost its data): ``earliest`` re-reads from the log start (dedup by
    #: ``event_id`` absorbs what was read before) with an ERROR line and an
    #: ``offsets_reset`` alert; ``fail`` stops the run.
    offset_reset_on_loss: Literal["earliest", "fail"] = "earliest"
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    #: How long the merged source waits for a partition that has nothing buffered yet
    #: before merging without it: in a bounded run (``--until-end``, input already
    #: written) ...
    merge_max_wait_ms: Annotated[int, Field(ge=0, le=600_000)] = 2000
    #: ... and in a live run, where waiting is latency and a few milliseconds of
    #: disorder between partitions is well inside the windows' allowed lateness.
    live_merge_wait_ms: Annotated[int, Field(ge=0, le=600_000)] = 5
    #: Live runs: the source marks its progress ("everything up to here has been read")
    #: at most this often, and every step that merges several inputs waits for the mark
    #: before it processes what came (flows/ordering.py). A mark reaches every keyed step,
    #: so rarer marks cost less CPU and add up to this much latency; they never change a
    #: decision. Replays mark after every batch.
    tick_interval_ms: Annotated[int, Field(ge=0, le=10_000)] = 5
    #: Physical topic names, by logical name (defaults: the logical names).
    topics: dict[str, str] = {}

    @model_validator(mode="after")
    def _no_credentials_in_bootstrap(self) -> KafkaSettings:
        # librdkafka would print them back in its own (unmaskable) connection errors.
        if "@" in self.bootstrap_servers:
            raise ValueError("bootstrap_servers must not hold credentials; set sasl.username "
                             "in kafka.client and sasl.password in kafka.secrets")
        return self

    @model_validator(mode="after")
    def _known_topics(self) -> KafkaSettings:
        from esg_leads.schemas.topics import ALL_TOPICS

        unknown = sorted(set(self.topics) - set(ALL_TOPICS))
        if unknown:
            raise ValueError(f"unknown logical topic(s) {unknown}; known: {sorted(ALL_TOPICS)}")
        return self

    def topic(self, logical: str) -> str:
        """The physical name of a logical topic."""
        return self.topics.get(logical, logical)

    def client_config(self) -> dict[str, str | int | bool]:
        """librdkafka settings with the secrets revealed: for clients only, never for logs."""
        config: dict[str, str | int | bool] = {"bootstrap.servers": self.bootstrap_servers}
        config.update(self.client)
        config.update({k: v.get_secret_value() for k, v in self.secrets.items()})
        return config


class RecoverySettings(Section):
    directory: str | None = None
    snapshot_interval: Positive = timedelta(seconds=10)
    backup_interval: NotNegative = timedelta(0)
    partitions: Annotated[int, Field(ge=1, le=64)] = 1


class AuditSettings(Section):
    #: Where ``esg-leads run`` writes the audit trail (Parquet, by tenant and date);
    #: ``None`` turns it off. Replays write it under their output directory.
    directory: str | None = "audit-log"


class CrmBackoffSettings(Section):
    #: Retries wait a random time in ``[0, min(max, base * 2**attempt))`` ("full jitter").
    base: Positive = timedelta(milliseconds=500)
    max: Positive = timedelta(seconds=60)
    #: After a 401/403 (a configuration error), ask again this often.
    auth_retry: Positive = timedelta(minutes=1)


class CrmBreakerSettings(Section):
    #: Consecutive failed requests (5xx, timeouts, connection errors) that open the breaker.
    failures: Annotated[int, Field(ge=1, le=10_000)] = 5
    #: How long an open breaker sends nothing before one probe (half-open).
    cooldown: Positive = timedelta(seconds=30)


#: Handoff fields not sent to the CRM unless mapped: the lineage is for the audit,
#: not for the sales team's records.
_NOT_SENT_BY_DEFAULT = frozenset(("lineage", "lineage_omitted"))


#: Fields a CRM body can carry beyond the handoff's own: ``lead_key``, the lead's
#: ``<tenant>/<investor_id>``, for a shared CRM's unique external id (by ``investor_id``
#: alone, a CRM would merge two tenants' ``inv-1``).
CRM_DERIVED_FIELDS = frozenset(("lead_key",))


def _default_field_map() -> dict[str, str]:
    from esg_leads.schemas.outputs import CrmHandoff

    return {name: name for name in CrmHandoff.model_fields if name not in _NOT_SENT_BY_DEFAULT}


class CrmSettings(Section):
    """Where and how ``esg-leads crm-sync`` delivers ``crm.handoff`` (see README)."""

    #: Base URL of the CRM's API; a lead is ``{url}/tenants/{tenant}/leads/{investor_id}``
    #: (each id percent-encoded): tenants share the CRM, two tenants' ``inv-1`` are two leads.
    url: str = "http://127.0.0.1:8090"
    #: Bearer token (``ESG_LEADS_CRM__TOKEN``); ``None``: no Authorization header.
    token: SecretStr | None = None
    #: Our handoff field → the CRM's property name (e.g. HubSpot ``score`` →
    #: ``hs_lead_score``). A field left out is not sent. Default: every field as is
    #: (``tenant``, ``investor_id`` included) but ``lineage``, ``lineage_omitted``.
    #: The CRM's unique external id: map ``lead_key`` to it, never ``investor_id``.
    field_map: dict[str, Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=_default_field_map)
    #: Per request: connect, read, write and pool timeouts.
    timeout: Positive = timedelta(seconds=10)
    #: Client-side limit: requests per second (token bucket, bursts up to one second's
    #: worth), so we stay under the CRM's published limit instead of collecting 429s.
    rate_limit_per_second: Annotated[float, Field(gt=0, le=10_000)] = 10
    #: Requests on the wire at once (distinct investors; one investor is never parallel).
    max_in_flight: Annotated[int, Field(ge=1, le=256)] = 4
    #: Records read from Kafka but not yet acknowledged before reading pauses.
    max_waiting: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    #: Bytes of a rejecting CRM's response body kept in the dead letter's detail.
    error_excerpt_bytes: Annotated[int, Field(ge=0, le=900)] = 256
    backoff: CrmBackoffSettings = CrmBackoffSettings()
    breaker: CrmBreakerSettings = CrmBreakerSettings()

    @model_validator(mode="after")
    def _known_fields(self) -> CrmSettings:
        from esg_leads.schemas.outputs import CrmHandoff

        unknown = sorted(set(self.field_map) - set(CrmHandoff.model_fields) - CRM_DERIVED_FIELDS)
        if unknown:
            raise ValueError(f"crm.field_map: unknown handoff field(s) {unknown}")
        if len(set(self.field_map.values())) != len(self.field_map):
            raise ValueError("crm.field_map: two fields map to the same CRM property")
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("crm.url must start with http:// or https://")
        return self


class WebhookSettings(Section):
    """``esg-leads webhooks``: signed inbound CRM outcomes and review decisions."""

    host: str = "127.0.0.1"
    #: A signed request's ``X-Timestamp`` may be at most this far from our clock.
    tolerance: Positive = timedelta(minutes=5)
    #: Larger bodies are refused (413) while they are read, never buffered whole.
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    #: Accepted requests per second over all tenants (token bucket); more → 429.
    rate_limit_per_second: Annotated[float, Field(gt=0, le=100_000)] = 200
    #: How long a request waits for the broker's acknowledgement before 503.
    produce_timeout: Positive = timedelta(seconds=10)


class MetricsSettings(Section):
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    host: str = "127.0.0.1"


class SourceSettings(Section):
    """A signal source (a property signal's ``source``): how long it may stay silent."""

    #: After this much event time without a signal from the source, one ``feed_stale``
    #: alert (and one ``feed_recovered`` when it sends again); see operators/feed_health.py.
    max_staleness: Positive


class RegistrySettings(Section):
    """The model registry (online_models/model_store.py) and the models a run starts from."""

    #: Where model versions are stored; default ``registry`` under
    #: ``recovery.directory``, else ``model-registry`` in the working directory.
    directory: str | None = None
    #: Warm start: tenant (or ``"*"``: every tenant not named) -> model version (or an
    #: unambiguous prefix) its scoring starts from instead of from nothing. Only a
    #: scorer's first state: a run resuming from a recovery snapshot keeps its own.
    models: dict[str, Annotated[str, Field(pattern=r"^m-[0-9a-f]{4,12}$")]] = {}


ModelVersion = Annotated[str, Field(pattern=r"^m-[0-9a-f]{4,12}$")]


class ChallengerSettings(Section):
    """A registry version scored against a tenant's champion (operators/model_lifecycle.py)."""

    #: The registry version (or an unambiguous prefix) of the challenger.
    version: ModelVersion
    #: Share of the tenant's investors whose leads the challenger decides (canary),
    #: chosen by a keyed BLAKE2b hash of tenant and investor id; 0: shadow only.
    canary_share: Fraction = 0.0


class RetrainSettings(Section):
    """Drift retraining (operators/model_lifecycle.py): a challenger warm-started from the
    champion, fitted on the tenant's recent labels, judged on labels it did not learn."""

    #: The most recent labelled examples a tenant keeps to fit a challenger on at once
    #: (features, label and outcome time; an erased investor's leave at the erasure).
    buffer_labels: Annotated[int, Field(ge=10, le=100_000)] = 2000
    #: How far back before a detection a label counts as recent (fitted or held out).
    lookback: Positive = timedelta(days=2)
    #: Sample weight of a recent label in the challenger's fit (the champion learns
    #: every label with weight 1): how much faster the challenger follows the new world.
    weight: Annotated[float, Field(ge=1, le=100)] = 3.0
    #: Share of investors (a stable hash of tenant and id) whose buffered labels are held
    #: out of the fit at the detection, to judge the challenger on at once.
    holdout_share: Annotated[float, Field(gt=0, lt=1)] = 0.5
    #: The paired test is read at ``looks`` planned points, every ``look_labels`` shared
    #: labels, each at confidence ``1 - (1 - models.confidence) / looks`` (Bonferroni:
    #: looking often does not raise the chance of promoting a model that is no better).
    look_labels: Annotated[int, Field(ge=10, le=100_000)] = 40
    looks: Annotated[int, Field(ge=1, le=100)] = 3


class ModelSettings(Section):
    """Champion and challenger: shadow scoring, canary, promotion and rollback rules."""

    #: Tenant (or ``"*"``: every tenant not named) -> the challenger its scoring runs
    #: in shadow from the first event. Commands (``ops.control``) change champions at run time.
    challengers: dict[str, ChallengerSettings] = {}
    #: Labels (most recent) the promotion and rollback tests look at.
    window_labels: Annotated[int, Field(ge=10, le=100_000)] = 500
    #: Shared labels before a challenger may be promoted (or a promotion rolled back).
    min_labels: Annotated[int, Field(ge=10, le=100_000)] = 200
    #: One-sided confidence of the paired test on per-label log-loss differences: the
    #: challenger is promoted when the lower bound of (champion - challenger) is above
    #: ``margin``; a promoted model is rolled back when the lower bound of (new -
    #: predecessor) is above ``margin``.
    confidence: Annotated[float, Field(ge=0.5, lt=1)] = 0.95
    #: Mean log loss per label the winner must gain by (0: any significant gain).
    margin: Annotated[float, Field(ge=0, le=1)] = 0.0
    #: After a promotion the predecessor stays in shadow for this many labels: long
    #: enough to catch a degradation, then it is dropped (the promotion stands).
    watch_labels: Annotated[int, Field(ge=10, le=100_000)] = 1000
    #: Automatic promotion of a challenger that wins the test (off: only commands promote).
    auto_promote: bool = True
    #: Automatic rollback of a promotion that loses against its predecessor.
    auto_rollback: bool = True
    #: The challenger a drift detection starts (``models.retraining.*``).
    retraining: RetrainSettings = RetrainSettings()

    @model_validator(mode="after")
    def _min_within_window(self) -> ModelSettings:
        if self.min_labels > self.window_labels:
            raise ValueError("models.min_labels must not exceed models.window_labels")
        return self


class LoggingSettings(Section):
    """What the commands log, and how (``--log-format`` sets ``format``)."""

    #: ``text`` for people, ``json`` for log pipelines: one object per line with time,
    #: level, logger, run_id, tenant and message (flows/logs.py).
    format: Literal["text", "json"] = "text"
    #: ``esg-leads run`` logs events/s, leads, lag and dead letters this often.
    heartbeat: Positive = timedelta(seconds=30)


#: The salt used when none is configured: fine for replays, weak in production.
DEV_CONTACT_HASH_SALT = "dev-only-salt"


class Settings(Section):
    """Everything a run needs; ``Settings()`` is a working development default."""

    tenants: dict[TenantId, TenantSettings] = {
        "acme-capital": TenantSettings(),
        "borealis-re": TenantSettings(),
        "cityline-im": TenantSettings(),
    }
    ingest: IngestSettings = IngestSettings()
    dlq: DlqSettings = DlqSettings()
    retention: RetentionSettings = RetentionSettings()
    windows: WindowSettings = WindowSettings()
    dedup: DedupSettings = DedupSettings()
    features: FeatureSettings = FeatureSettings()
    scoring: ScoringSettings = ScoringSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    kafka: KafkaSettings = KafkaSettings()
    recovery: RecoverySettings = RecoverySettings()
    metrics: MetricsSettings = MetricsSettings()
    audit: AuditSettings = AuditSettings()
    crm: CrmSettings = CrmSettings()
    webhooks: WebhookSettings = WebhookSettings()
    registry: RegistrySettings = RegistrySettings()
    models: ModelSettings = ModelSettings()
    #: Signal sources to watch, by name (``"*"``: any source not named); none by default.
    sources: dict[str, SourceSettings] = {}
    logging: LoggingSettings = LoggingSettings()
    #: Salt for hashing contact details; set it per deployment (env or secret file).
    #: ``esg-leads run`` warns at start-up while it is still the development default.
    contact_hash_salt: SecretStr = SecretStr(DEV_CONTACT_HASH_SALT)
    #: Validate every output record against its schema (slow; for tests and debugging).
    validate_outputs: bool = False

    @model_validator(mode="after")
    def _warm_start_tenants(self) -> Settings:
        unknown = sorted(set(self.registry.models) - set(self.tenants) - {"*"})
        if unknown:  # a typo'd tenant would silently start cold
            raise ValueError(f"registry.models names unknown tenants: {', '.join(unknown)}")
        unknown = sorted(set(self.models.challengers) - set(self.tenants) - {"*"})
        if unknown:
            raise ValueError(f"models.challengers names unknown tenants: {', '.join(unknown)}")
        return self
