"""Records that travel *between* the flow's stages (not on any topic).

Named tuples: immutable, the cheapest records Python builds on a hot path, and
they pickle fast (bytewax pickles them to exchange between workers and in
recovery snapshots; frozen slotted dataclasses measured 4x slower to build and 2x slower to pickle).
Topic contracts are the pydantic models in :mod:`schemas.inputs` and
:mod:`schemas.outputs`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import NamedTuple

from pydantic import BaseModel

#: A message's place in the input: its replay order key ``(timestamp_ms, topic, partition,
#: offset)`` (:meth:`RawMessage.sort_key`). Everything derived from a message carries it.
Position = tuple


class RawMessage(NamedTuple):
    """One Kafka message as a source delivers it, or as a recording stores and replays it.

    Parameters
    ----------
    topic, partition, offset
        Kafka coordinates of the message.
    timestamp_ms
        Kafka message timestamp, in milliseconds since the Unix epoch (UTC).
    key, value
        Raw message key and value; ``None`` for a null key / tombstone.
    headers
        Kafka headers as ``(name, value)`` pairs, in their original order.
        Header values may be ``None``.

    Examples
    --------
    >>> m = RawMessage("leads", 2, 41, 1_700_000_000_000, b"id-7", b"{}")
    >>> m.sort_key(), m.headers
    ((1700000000000, 'leads', 2, 41), ())
    >>> [m.topic for m in sorted([RawMessage("b", 0, 5, 10, None, None),
    ...                           RawMessage("a", 1, 0, 10, None, None)], key=RawMessage.sort_key)]
    ['a', 'b']
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()

    def sort_key(self) -> tuple[int, str, int, int]:
        """Replay order: ``(timestamp_ms, topic, partition, offset)``."""
        return (self.timestamp_ms, self.topic, self.partition, self.offset)


class OffsetsReset(NamedTuple):
    """A Kafka source's report that it restarted a partition away from its stored position.

    The stored position (resume state, or where reading had got to) was no longer on
    the broker: retention deleted it, or the broker lost its data. The source goes on
    at ``new_offset`` and hands this over in its stream, in order with the messages,
    so that the flow turns it into an ``offsets_reset`` alert (a step in ``operators``
    decides what the alert says; the connector only reports the fact).

    Examples
    --------
    >>> r = OffsetsReset("investor.engagements", 1, 500, 0, 0, 120, 1_767_000_000_000, "lost")
    >>> r.skipped, r.sort_key()[0]  # a restart behind the old position skips nothing
    (0, -1)
    >>> OffsetsReset("t", 0, 10, 40, 40, 90, 0, "retention").skipped  # offsets 10..39 are gone
    30
    """

    topic: str
    partition: int
    old_offset: int  #: the position that was no longer available
    new_offset: int  #: where reading goes on (the log start)
    log_start: int  #: the partition's log start and end when the loss was seen
    log_end: int
    detected_at_ms: int  #: wall clock (ms since the Unix epoch) when the loss was seen
    detail: str  #: the broker's or librdkafka's words

    @property
    def skipped(self) -> int:
        """Offsets between the old and the new position that can no longer be read."""
        return max(0, self.new_offset - self.old_offset)

    def sort_key(self) -> tuple[int, str, int, int]:
        """Before every message: handed over as soon as it is first in its partition."""
        return (-1, self.topic, self.partition, -1)


class Ingested(NamedTuple):
    """A valid input event and where it came from.

    The original bytes ride along until the event has passed every check that could
    still dead-letter it (duplicate, late, erased).
    """

    event: BaseModel
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None

    @property
    def tenant(self) -> str:
        return self.event.tenant  # type: ignore[attr-defined]

    def ref(self) -> tuple[str, str, int, int]:
        """Lineage reference: ``(event_id, topic, partition, offset)``."""
        return (self.event.event_id, self.topic, self.partition, self.offset)  # type: ignore[attr-defined]


class PropertyFacts(NamedTuple):
    """A property's ESG facts as one signal stated them (one version in the catalog)."""

    property_id: str
    tenant: str
    effective: datetime  #: event time of the signal; the version holds from here
    country: str
    asset_class: str
    value_eur: float | None
    epc_band: str | None
    epc_rank: int | None  #: 0 = A+, 7 = G
    energy_star_score: int | None
    certified: bool
    certified_verified: bool
    certification: str | None  #: e.g. "BREEAM very_good", "NABERS 5.5"
    energy_intensity: float | None
    carbon_intensity: float | None
    max_climate_risk: int | None
    third_party: bool  #: the signal's data is third-party verified
    data_as_of_ordinal: int  #: ``date.toordinal()`` of the data's as-of date
    high_epc: bool  #: EPC A+, A or B
    low_climate_risk: bool
    #: Lineage of the signal that stated these facts: ``(event_id, topic, partition, offset)``.
    ref: tuple[str, str, int, int] | None = None
    #: The signal's ``source`` (its provider), for feed health; ``None`` in older snapshots.
    source: str | None = None


class CatalogMix(NamedTuple):
    """Share of a tenant's catalog with each ESG quality (the base rate to compare to)."""

    properties: int
    high_epc: float
    certified: float
    low_climate_risk: float
    log_value: float | None = None  #: mean log(value in EUR): the fund's typical lot size


class EnrichedEngagement(NamedTuple):
    """An engagement with the point-in-time facts of the property it names, if any."""

    ingested: Ingested
    facts: PropertyFacts | None
    mix: CatalogMix

    @property
    def event_time(self) -> datetime:
        return self.ingested.event.event_time  # type: ignore[attr-defined]


class SourceFeed(NamedTuple):
    """What the catalog knew about one watched signal source (see :class:`FeedStatus`)."""

    source: str
    max_staleness_s: float
    last_signal_s: float  #: event time (epoch s) of its latest signal
    #: Share of the catalog's properties whose current facts this source stated.
    catalog_share: float
    #: Recent silences longer than ``max_staleness_s``: (last signal before, first after).
    gaps: tuple[tuple[float, float], ...] = ()


class FeedStatus(NamedTuple):
    """A tenant's watched signal sources as its catalog knew them at event time
    ``read_at_s``: enough to tell, for any event time, how long each had been silent
    (see :func:`operators.degradation.silence`). The intake sends one to every investor
    shard of the tenant whenever a source goes stale or recovers."""

    tenant: str
    read_at_s: float
    sources: tuple[SourceFeed, ...]


class InvestorWindow(NamedTuple):
    """What one investor did in one closed window."""

    tenant: str
    investor_id: str
    window_start: datetime
    window_end: datetime
    aggregate: object  #: operators.investor_window.WindowAggregate


class SilenceDue(NamedTuple):
    """An investor's silence reached a re-score point on the tenant's clock.

    Sent by the tenant's intake when its watermark reaches ``due`` (see
    :class:`operators.investor_window.InvestorWindows`), to the investor's shard, which
    re-scores the investor as of ``due`` unless it has been active since ``planned_for``
    (the end of the window the re-score was planned from).
    """

    tenant: str
    investor_id: str
    due: datetime
    planned_for: datetime


class InvestorContext(NamedTuple):
    """The slow-moving facts about an investor that later agents need."""

    investor_type: str | None
    subscriber_type: str | None
    jurisdiction: str | None
    consents: dict[str, str]
    do_not_call: bool
    unsubscribed: bool
    ticket_min_eur: float | None
    ticket_max_eur: float | None
    min_epc_band: str | None
    required_certifications: tuple[str, ...]
    sfdr_target: str | None
    uk_sdr_label: str | None
    max_climate_risk: int | None
    target_countries: tuple[str, ...]
    target_asset_classes: tuple[str, ...]
    excluded_asset_classes: tuple[str, ...]
    contact_ref: str | None
    #: Properties this investor engaged with most, latest facts first known to us.
    engaged_properties: tuple[PropertyFacts, ...] = ()
    #: On the firm's do-not-contact list: no channel at all.
    do_not_contact: bool = False
    #: The investor's stated IANA time zone, if any (quiet hours are local).
    time_zone: str | None = None


class FeatureVector(NamedTuple):
    """The versioned features of one investor as of the end of a window."""

    tenant: str
    investor_id: str
    as_of: datetime
    feature_set_version: str
    features: dict[str, float]
    values: tuple[float, ...]  #: ``features``' values in the feature set's fixed order
    esg_alignment: float
    esg_components: dict[str, float]
    intent: float
    engagement_readiness: float
    data_freshness_days: float | None
    context: InvestorContext
    #: ``(event_id, topic, partition, offset)`` of inputs, packed (``PackedRefs`` of
    #: operators/lineage.py, iterated as those tuples); records list them as dicts
    #: (``operators.lineage.as_dicts``).
    lineage: Collection[tuple[str, str, int, int]]
    #: Latest Kafka (ingest) timestamp among the inputs behind this vector, if new input.
    ingest_ms: int | None = None
    #: Features that were outside their documented range and were clamped (a defect:
    #: counted as ``features_clamped``; see ``operators.features.clamp_features``).
    clamped: tuple[str, ...] = ()
    #: Contributing inputs beyond ``lineage``: ``{"count", "digest"}`` (see
    #: ``operators/lineage.py``), or ``None``.
    lineage_omitted: dict | None = None
    #: The tenant's watched signal sources as the investor stage last heard of them
    #: (``None``: none stale yet); scoring degrades what a stale one stated.
    feeds: FeedStatus | None = None

    def features_only(self) -> FeatureVector:
        """This vector without context, lineage and feeds: what point-in-time learning keeps.

        Same as ``_replace(context=None, lineage=(), lineage_omitted=None, feeds=None)``
        at less than half the cost.
        """
        return FeatureVector(*self[:-6], None, (), *self[-4:-2])  # type: ignore[arg-type]


class LabelledExample(NamedTuple):
    """A CRM label joined to the features the investor had when last scored before it."""

    tenant: str
    investor_id: str
    features: FeatureVector
    label: bool
    outcome_time: datetime
    outcome_event_id: str


class InvestorNotice(NamedTuple):
    """Something about an investor that later agents must act on, now.

    Kinds: ``profile`` (consent or preferences changed), ``unsubscribe``,
    ``erasure``, ``outcome`` (a CRM outcome; ``detail`` is its kind) and
    ``review_decision`` (``detail`` is the verdict, ``case_id`` the case).
    """

    tenant: str
    investor_id: str
    kind: str
    event_time: datetime
    ref: tuple[str, str, int, int]
    context: InvestorContext | None = None
    detail: str | None = None
    case_id: str | None = None


class GlobalModelUpdate(NamedTuple):
    """A copy of the cross-tenant model, broadcast to one tenant's scorer."""

    tenant: str
    model: bytes  #: the pickled model
    labels: int  #: labels the global model has learned from


class Scored(NamedTuple):
    """A scored lead record on its way to the lifecycle agents, with what they need."""

    record: dict  #: a :class:`~schemas.outputs.ScoredLead` record, state not yet decided
    context: InvestorContext
    ingest_ms: int | None = None  #: see :attr:`FeatureVector.ingest_ms`


class Emitted(NamedTuple):
    """An output of the lifecycle stage, tagged with the output it goes to.

    ``kind`` is one of ``leads``, ``review``, ``handoff``, ``audit``, ``dlq`` or
    ``tombstone`` (``record`` is then ``None``: delete ``key`` from ``topic``).
    """

    kind: str
    key: str
    record: dict | None
    topic: str | None = None


class Tombstone(NamedTuple):
    """Delete ``key`` (``<tenant>/<investor_id>``) from ``topic``: an erasure, as the
    sink of that topic receives it when it deletes its own keys (see flows.pipeline)."""

    topic: str
    key: str

    @property
    def tenant(self) -> str:
        return self.key.split("/", 1)[0]
