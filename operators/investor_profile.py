"""Long-horizon state of one investor: what windows cannot hold.

Decayed engagement counters over several half-lives, the ESG content of what the
investor looked at (also decayed, so tastes can change), stated preferences and
consent, and the last few feature vectors sent for scoring (for point-in-time
learning). :mod:`operators.features` turns this state into a feature vector.
"""

from __future__ import annotations

import math
import operator
from array import array
from operator import mul
from collections.abc import Iterable
from datetime import datetime

from esg_leads.operators.compact import Weights, shared, shared_names
from esg_leads.operators.investor_window import ACTION_INDEX, WindowAggregate
# KeptVector: also where snapshots of a4481ae name it (pickled by module and name).
from esg_leads.operators.kept_vectors import KeptVector, PackedHistory, kept, unpacked
from esg_leads.operators.top_properties import TopProperties
from esg_leads.operators.lineage import PackedRefs, Ref, combine, compact, extend_refs, pack
from esg_leads.schemas.common import EPC_RANK
from esg_leads.schemas.inputs import InvestorProfile
from esg_leads.schemas.records import FeatureVector, InvestorContext, PropertyFacts

LN2 = math.log(2)
#: How much each engagement action says about depth of interest.
DEPTH_WEIGHTS: dict[str, float] = {
    "brochure_download": 1.0,
    "esg_report_download": 1.5,
    "webinar_attended": 1.0,
    "reply": 2.0,
    "meeting_booked": 4.0,
    "call": 2.0,
}
_DEPTH = [(ACTION_INDEX[a], w) for a, w in DEPTH_WEIGHTS.items()]
_VIEW = ACTION_INDEX["property_view"]
_ESG_REPORT = ACTION_INDEX["esg_report_download"]
_MEETING = ACTION_INDEX["meeting_booked"]
_REPLY = ACTION_INDEX["reply"]
#: Feature vectors kept for point-in-time learning (an outcome pairs with one of them).
HISTORY = 4
TOP_PROPERTIES = 8
#: References an investor's state lists (engagements and the property signals behind
#: them, most recent first to go); older ones are counted and digested in
#: ``lineage_omitted``. Below the outputs' 64, leaving room for notices (lifecycle).
MAX_LINEAGE = 48
_CONTENT_HALF_LIFE_DAYS = 30.0
#: Stated tuples shared by every investor stating the same (``compact.shared_names``).
_STATED = ("required_certifications", "excluded_assets", "target_countries", "target_assets")
#: ``InvestorProfileState.totals``: windows, events, views, depth, ESG reports, then
#: dwell (4) and seek_dwell (2).
_DWELL, _SEEK_DWELL, _TOTALS = 5, 9, 11
#: The decayed counters of ``InvestorProfileState.decayed``, one array of doubles: the
#: engagement counts and depth, one per half-life (``n``), then these, by the index
#: from the end each has (the same whatever ``n``). A list or a float object per
#: counter cost ~340 bytes per investor more than their doubles (issue 16).
_DECAYED = (
    ("views", 1),  # 30-day content half-life, like the ESG content below
    ("esg_reports", 1), ("active_windows", 1), ("value_n", 1), ("value_sum", 1),
    ("value_sq", 1),
    # ESG content of viewed properties: with_facts, high, certified, low_risk,
    # third_party, expected_high, expected_certified, expected_low_risk, age_sum, stale
    ("content", 10),
    ("epc_ranks", 8),
)
_FIXED = 24
_VIEWS, _ESG_REPORTS, _ACTIVE_WINDOWS, _VALUE_N, _VALUE_SUM, _VALUE_SQ, _CONTENT, _EPC_RANKS = (
    -24, -23, -22, -21, -20, -19, -18, -8)  # (``counters`` spells them out too)
_AT = {name: (at, size) for (name, size), at in zip(_DECAYED, (
    _VIEWS, _ESG_REPORTS, _ACTIVE_WINDOWS, _VALUE_N, _VALUE_SUM, _VALUE_SQ, _CONTENT, _EPC_RANKS),
    strict=True)}
assert _FIXED == sum(size for _, size in _DECAYED) == -_VIEWS and -_EPC_RANKS == 8


#: Investor types that count as institutional (the ``institutional`` feature).
INSTITUTIONAL = frozenset(("asset_manager", "pension_fund", "insurer", "reit", "sovereign_wealth"))
#: Profile fields counted by ``profile_completeness``.
PROFILE_FIELDS = 8
class InvestorProfileState:
    """Everything the flow remembers about one investor between windows."""

    __slots__ = (
        "tenant",
        # stated profile
        "has_profile", "investor_type", "subscriber_type", "jurisdiction", "consents",
        "do_not_call", "ticket_min", "ticket_max", "min_epc_rank", "min_epc_band",
        "required_certifications", "sfdr_target", "uk_sdr_label", "max_climate_risk",
        "excluded_assets", "target_countries", "target_assets", "risk_tolerance",
        "contact_ref", "unsubscribed", "unsubscribed_at", "_profile_features",
        "do_not_contact", "time_zone",
        # behaviour
        "clock", "decayed", "countries", "assets",
        "meetings", "replies", "totals", "catalog_log_value", "ingest_ms", "first_seen",
        "last_active", "previous_active",
        "top_properties", "_engaged", "lineage", "lineage_omitted", "history",
        "first_known",
        # caches, never pickled (see __getstate__)
        "_context",
    )
    #: Slots rebuilt on demand: a snapshot holds the state, not what is derived from it.
    #: (``_engaged`` stays in: decay can round two weights to a tie, so a ranking
    #: recomputed after a restore could differ from the one an unbroken run keeps.)
    _CACHES = ("_context",)

    def __init__(self, half_lives_days: tuple[float, ...]) -> None:
        self.tenant = ""
        self.has_profile = False
        self.investor_type: str | None = None
        self.subscriber_type: str | None = None
        self.jurisdiction: str | None = None
        #: Shared with every investor who has the same (operators/compact.py): never changed.
        self.consents: dict[str, str] = {}
        self.do_not_call = False
        self.do_not_contact = False
        self.time_zone: str | None = None
        self.ticket_min: float | None = None
        self.ticket_max: float | None = None
        self.min_epc_rank: int | None = None
        self.min_epc_band: str | None = None
        self.required_certifications: tuple[str, ...] = ()
        self.sfdr_target: str | None = None
        self.uk_sdr_label: str | None = None
        self.max_climate_risk: int | None = None
        self.excluded_assets: tuple[str, ...] = ()
        self.target_countries: tuple[str, ...] = ()
        self.target_assets: tuple[str, ...] = ()
        self.risk_tolerance: str | None = None
        self.contact_ref: str | None = None
        self.unsubscribed = False
        self.unsubscribed_at: datetime | None = None
        self._profile_features: dict[str, float] | None = None
        # Decayed counters, all decayed to ``clock``, in one array of doubles (see
        # ``_DECAYED``): read and set by name (the properties below).
        self.clock: float | None = None
        # (From a list: built from bytes or an iterator, an array keeps spare room.)
        self.decayed = array("d", [0.0] * (2 * len(half_lives_days) + _FIXED))
        self.countries = Weights()  # read like dicts (operators.features._table_features)
        self.assets = Weights()
        self.meetings = 0
        self.replies = 0
        # Undecayed totals since first seen: windows, events, views, depth, ESG reports,
        # then ``dwell`` and ``seek_dwell`` (the properties below), as doubles (counts
        # too: the same numbers below 2**53, and the features' arithmetic gives the same
        # floats with a count as a double): a list per group and an int object per
        # count cost ~200 bytes per investor more (issue 16).
        self.totals = array("d", [0.0] * _TOTALS)
        self.catalog_log_value: float | None = None  # the tenant's typical lot size, last seen
        self.ingest_ms: int | None = None  # of the latest window's inputs
        self.first_seen: datetime | None = None
        self.last_active: datetime | None = None
        self.previous_active: datetime | None = None
        #: When the investor first became known: the earliest profile or engagement
        #: (a CRM record often exists before the first visit; rates run from here).
        self.first_known: datetime | None = None
        #: The most engaged properties: weights, facts, and their thesis checks once
        #: computed (operators.features.thesis_fit), compact (operators/top_properties.py).
        self.top_properties = TopProperties()
        self._engaged: tuple[PropertyFacts, ...] | None = None  # cached ranking
        #: Compact references, packed (operators/lineage.py): every vector built until
        #: the next window shares them, uncopied.
        self.lineage: PackedRefs | tuple[Ref, ...] = ()
        #: Contributing references no longer in ``lineage`` (operators/lineage.py).
        self.lineage_omitted: dict | None = None
        #: The last vectors scored, packed (``remember``); a list of them when they
        #: cannot be (a snapshot's vectors of an older shape); empty: ``()``, shared.
        self.history: PackedHistory | list[KeptVector | FeatureVector] | tuple = ()
        #: The investor context, built once per change of what it shows (the profile,
        #: the engaged properties) instead of once per vector and notice.
        self._context: InvestorContext | None = None

    def __getstate__(self) -> tuple:
        # The shape default slot pickling gives, without the caches (the context; the
        # top properties' thesis checks, left out by TopProperties' own pickling).
        state = {name: getattr(self, name) for name in self.__slots__
                 if name not in self._CACHES and hasattr(self, name)}
        return None, state

    def __setstate__(self, state: tuple) -> None:
        # Slots pickle as (None, {slot: value}); older snapshots lack lineage_omitted,
        # seek_dwell and first_known (features then read first_seen), and hold the
        # lineage as a list, and its references as dicts.
        self.lineage_omitted = None
        self.history = ()
        self.first_known = None
        self._engaged = self._profile_features = None
        values = state[1]
        if "decayed" not in values:
            # a4481ae and before: a slot per counter (floats; lists or arrays of them).
            values = dict(values)
            counts, depth = values.pop("counts"), values.pop("depth")
            fixed: list[float] = []
            for name, size in _DECAYED:
                value = values.pop(name, 0.0 if size == 1 else (0.0,) * size)
                fixed += [value] if size == 1 else value
            values["decayed"] = array("d", [*counts, *depth, *fixed])
        if "dwell" in values:
            # a4481ae and before: totals, dwell and seek_dwell lists of their own.
            values = dict(values)
            values["totals"] = array("d", [*values.pop("totals"), *values.pop("dwell"),
                                           *values.pop("seek_dwell", (0.0, 0))])
        for name, value in values.items():
            setattr(self, name, value)
        if self.history and type(self.history) is not PackedHistory:
            # A list of KeptVector (snapshots of a4481ae) or of FeatureVector (earlier).
            self.history = PackedHistory.of(self.history) or list(self.history)
        if type(self.lineage) is not PackedRefs:
            self.lineage = pack(tuple(map(compact, self.lineage)))
        # A dict of [weight, facts] in snapshots of a4481ae and earlier.
        self.top_properties = TopProperties.of(self.top_properties)
        self.consents = shared(self.consents)
        if self._profile_features is not None:
            self._profile_features = shared(self._profile_features)
        # Dicts and lists in snapshots of earlier versions (floats: same doubles).
        self.countries = Weights.of(self.countries)
        self.assets = Weights.of(self.assets)
        for name in _STATED:  # shared again, however many snapshots restored
            setattr(self, name, shared_names(tuple(getattr(self, name, ()))))
        self._context = None

    # ------------------------------------------------------- decayed counters

    @property
    def counts(self) -> tuple:
        """Events, decayed, one per half-life (a tuple: set it whole, or ``decayed``)."""
        d = self.decayed
        return tuple(d[:(len(d) - _FIXED) // 2])

    @counts.setter
    def counts(self, value: Iterable[float]) -> None:
        d = self.decayed
        _put(d, 0, (len(d) - _FIXED) // 2, value)

    @property
    def depth(self) -> tuple:
        """Depth of engagement (``DEPTH_WEIGHTS``), decayed, one per half-life."""
        d = self.decayed
        n = (len(d) - _FIXED) // 2
        return tuple(d[n:2 * n])

    @depth.setter
    def depth(self, value: Iterable[float]) -> None:
        d = self.decayed
        n = (len(d) - _FIXED) // 2
        _put(d, n, n, value)

    # views, esg_reports, active_windows, value_n, value_sum, value_sq (floats),
    # content and epc_ranks (arrays: copies) of ``decayed``, and dwell (seconds and views
    # on ESG-strong properties, then on others) and seek_dwell (sum of log1p(seconds),
    # views) of ``totals``, as WindowAggregate has them: after the class (``_counter``).

    def counters(self) -> tuple:
        """Every decayed counter at once, for the features (one call, not ten): counts,
        depth, views, esg_reports, active_windows, value_n, value_sum, value_sq (floats),
        content, epc_ranks (arrays: copies)."""
        d = self.decayed
        n = (len(d) - _FIXED) // 2
        return (d[:n], d[n:2 * n], d[-24], d[-23], d[-22], d[-21], d[-20], d[-19],
                d[-18:-8], d[-8:])  # (the offsets of ``_DECAYED``, spelled out: faster)

    # ------------------------------------------------------------- profile

    def apply_profile(self, profile: InvestorProfile, contact_ref: str | None) -> None:
        prefs = profile.preferences
        self._known_at(profile.event_time)
        self._profile_features = self._context = None
        self.top_properties.clear_checks()  # of the old profile (operators.features.thesis_fit)
        self.has_profile = True
        self.investor_type = profile.investor_type.value
        self.subscriber_type = profile.subscriber_type.value
        self.jurisdiction = profile.jurisdiction
        consents = {c.channel.value: c.status.value for c in profile.consents}
        if self.unsubscribed:
            # An unsubscribe outranks older consent records; only a fresh, explicit
            # opt-in recorded after it restores e-mail.
            email = next((c for c in profile.consents if c.channel.value == "email"), None)
            if (email is not None and email.status.value == "opted_in"
                    and email.updated_at is not None and self.unsubscribed_at is not None
                    and email.updated_at > self.unsubscribed_at):
                self.unsubscribed, self.unsubscribed_at = False, None
            else:
                consents["email"] = "opted_out"
        self.consents = shared(consents)
        self.do_not_call = profile.do_not_call
        self.do_not_contact = profile.do_not_contact
        self.time_zone = profile.time_zone
        self.ticket_min = profile.ticket_min_eur
        self.ticket_max = profile.ticket_max_eur
        self.min_epc_band = prefs.min_epc_band.value if prefs.min_epc_band else None
        self.min_epc_rank = EPC_RANK[self.min_epc_band] if self.min_epc_band else None
        self.required_certifications = shared_names(tuple(prefs.required_certifications))
        self.sfdr_target = prefs.sfdr_target.value if prefs.sfdr_target else None
        self.uk_sdr_label = prefs.uk_sdr_label.value if prefs.uk_sdr_label else None
        self.max_climate_risk = prefs.max_climate_risk
        self.excluded_assets = shared_names(tuple(a.value for a in prefs.excluded_asset_classes))
        self.target_countries = shared_names(tuple(profile.target_countries))
        self.target_assets = shared_names(tuple(a.value for a in profile.target_asset_classes))
        self.risk_tolerance = profile.risk_tolerance.value if profile.risk_tolerance else None
        self.contact_ref = contact_ref

    def unsubscribe(self, when: datetime) -> None:
        self.unsubscribed = True
        self.unsubscribed_at = when
        self.consents = shared({**self.consents, "email": "opted_out"})  # shared: a new one
        self._profile_features = self._context = None

    def profile_features(self) -> dict[str, float]:
        """Features of the stated profile, recomputed only after it changes."""
        cached = self._profile_features
        if cached is None:
            cached = self._profile_features = shared(profile_features(self))
        return cached

    # ------------------------------------------------------------ behaviour

    def decay_to(self, now: datetime, half_lives_days: tuple[float, ...]) -> None:
        # Eager, on purpose: every decay is followed by a vector that reads every
        # counter, so decaying on read would do the same multiplications later. (Fusing
        # decay with a window's additions into one pass per array was measured too:
        # more instructions than these list comprehensions and in-place adds.)
        ts = now.timestamp()
        clock = self.clock
        if clock is not None and ts > clock:
            days = (ts - clock) / 86_400
            exp = math.exp
            factors = [exp(-LN2 * days / h) for h in half_lives_days]
            f = exp(-LN2 * days / _CONTENT_HALF_LIFE_DAYS)
            decayed = self.decayed
            n = (len(decayed) - _FIXED) // 2
            if len(factors) == n:  # every counter times its factor, in one pass in C
                self.decayed = array("d", list(map(mul, decayed, factors + factors + [f] * _FIXED)))
            else:  # other half-lives than the snapshot's: as many as both have (zip)
                counts = [v * g for v, g in zip(decayed[:n], factors)]
                depth = [v * g for v, g in zip(decayed[n:2 * n], factors)]
                self.decayed = array("d", counts + depth + [v * f for v in decayed[2 * n:]])
            if self.countries:
                self.countries = self.countries.scaled(f)
                self.assets = self.assets.scaled(f)
            if self.top_properties:
                self.top_properties.scale(f)
        if clock is None or ts > clock:
            self.clock = ts

    def apply_window(self, agg: WindowAggregate, window_end: datetime,
                     half_lives_days: tuple[float, ...]) -> None:
        self.decay_to(window_end, half_lives_days)
        actions = agg.actions
        depth = sum(actions[i] * w for i, w in _DEPTH)
        d = self.decayed
        n = (len(d) - _FIXED) // 2
        for i in range(n):
            d[i] += agg.n
            d[n + i] += depth
        d[_VIEWS] += actions[_VIEW]
        d[_ESG_REPORTS] += actions[_ESG_REPORT]
        d[_ACTIVE_WINDOWS] += 1
        self.meetings += actions[_MEETING]
        self.replies += actions[_REPLY]
        if agg.catalog_log_value is not None:
            self.catalog_log_value = agg.catalog_log_value
        self.ingest_ms = agg.ingest_ms or None
        totals = self.totals
        for i, v in enumerate(agg.dwell, _DWELL):
            totals[i] += v
        totals[0] += 1
        totals[1] += agg.n
        totals[2] += actions[_VIEW]
        totals[3] += depth
        totals[4] += actions[_ESG_REPORT]
        c = _CONTENT
        d[c] += agg.with_facts
        d[c + 1] += agg.high_epc
        d[c + 2] += agg.certified
        d[c + 3] += agg.low_risk
        d[c + 4] += agg.third_party
        d[c + 5] += agg.expected_high
        d[c + 6] += agg.expected_certified
        d[c + 7] += agg.expected_low_risk
        d[c + 8] += agg.data_age_days
        d[c + 9] += agg.stale
        for i, k in enumerate(agg.epc_ranks, _EPC_RANKS):
            if k:
                d[i] += k
        if agg.countries:
            self.countries = self.countries.plus(agg.countries)
        if agg.assets:
            self.assets = self.assets.plus(agg.assets)
        for v in agg.log_values:
            d[_VALUE_N] += 1
            d[_VALUE_SUM] += v
            d[_VALUE_SQ] += v * v
        self._merge_properties(agg)
        if self.first_seen is None or (agg.first is not None and agg.first < self.first_seen):
            self.first_seen = agg.first
        self._known_at(agg.first)
        seek = agg.seek_dwell
        totals[_SEEK_DWELL] += seek[0]
        totals[_SEEK_DWELL + 1] += seek[1]
        self.previous_active = self.last_active
        self.last_active = window_end
        self.lineage, omitted = extend_refs(self.lineage, self.lineage_omitted, agg.refs,
                                            MAX_LINEAGE)
        self.lineage_omitted = combine(omitted, agg.omitted)

    def _known_at(self, when: datetime | None) -> None:
        if when is not None and (self.first_known is None or when < self.first_known):
            self.first_known = when

    def _merge_properties(self, agg: WindowAggregate) -> None:
        if agg.properties:
            self._engaged = None
            self.top_properties.merge(agg.properties, TOP_PROPERTIES)

    def engaged_properties(self, limit: int = 5) -> tuple[PropertyFacts, ...]:
        """The most engaged properties; decay scales all weights alike, so the ranking
        only changes when a window brings new views."""
        if self._engaged is None:
            # Sorted as by the key (-weight, id) (ids are unique: facts are never
            # compared), without a Python call per property.
            top = self.top_properties
            # (zip stops at the facts: the weights come first in ``numbers``)
            ranked = sorted(zip(map(operator.neg, top.numbers), top.ids, top.facts))
            self._engaged = tuple(r[2] for r in ranked[:5])
        return self._engaged[:limit]

    def context(self) -> InvestorContext:
        """The slow-moving facts later agents (compliance, outreach, handoff) need.

        Cached: it changes only with the profile (:meth:`apply_profile` and
        :meth:`unsubscribe` clear it) and with the ranking of the engaged properties,
        which most windows with property views leave as it was; many vectors and
        notices share one context, and nothing changes a context once built."""
        context = self._context
        engaged = self.engaged_properties()
        if context is not None:
            if context.engaged_properties != engaged:  # by identity first: cheap
                context = self._context = context._replace(engaged_properties=engaged)
        else:
            context = self._context = InvestorContext(
                investor_type=self.investor_type,
                subscriber_type=self.subscriber_type,
                jurisdiction=self.jurisdiction,
                consents=self.consents,  # shared, never changed (operators/compact.py)
                do_not_call=self.do_not_call,
                unsubscribed=self.unsubscribed,
                ticket_min_eur=self.ticket_min,
                ticket_max_eur=self.ticket_max,
                min_epc_band=self.min_epc_band,
                required_certifications=self.required_certifications,
                sfdr_target=self.sfdr_target,
                uk_sdr_label=self.uk_sdr_label,
                max_climate_risk=self.max_climate_risk,
                target_countries=self.target_countries,
                target_asset_classes=self.target_assets,
                excluded_asset_classes=self.excluded_assets,
                contact_ref=self.contact_ref,
                engaged_properties=engaged,
                # getattr: snapshots taken before these fields existed lack them.
                do_not_contact=getattr(self, "do_not_contact", False),
                time_zone=getattr(self, "time_zone", None),
            )
        return context

    # ---------------------------------------------------- point-in-time

    def remember(self, vector: FeatureVector) -> None:
        """Keep ``vector`` (without context and lineage) for point-in-time learning.

        Kept compact: every number as a double (``operators.kept_vectors.kept``), and
        the last :data:`HISTORY` vectors packed in one ``bytes`` (:class:`PackedHistory`):
        a dict, a tuple and float objects per kept vector were the largest part of an
        investor's state (issue 16). :meth:`features_as_of` rebuilds the vector exactly
        (a double holds a float as it was). A vector that does not fit the pattern (keys
        of an older feature set, from a snapshot; a number that is not a float) is kept
        as it is, without context and lineage, and the history as a list.
        """
        history = self.history
        if type(history) is PackedHistory:
            grown = history.plus(vector, HISTORY)
        else:  # empty, or a list (vectors of a snapshot that could not be packed)
            grown = PackedHistory.of([*history, vector][-HISTORY:])
        if grown is not None:
            self.history = grown
        else:
            self.history = [*history, kept(vector)][-HISTORY:]

    def features_as_of(self, when: datetime) -> FeatureVector | None:
        """The last vector scored with ``as_of <= when``: what the model knew then.

        Equal to the vector :meth:`remember` was given, without context and lineage."""
        history = self.history
        if type(history) is PackedHistory:
            found = history.last_at_or_before(when)
            return None if found is None else found.rebuilt()
        for vector in reversed(history):
            if vector.as_of <= when:
                if type(vector) is KeptVector:
                    return vector.rebuilt()
                if vector.features is None:
                    vector = unpacked(vector)  # packed by an earlier version (a snapshot)
                return vector
        return None

    def latest_as_of(self) -> datetime | None:
        """``as_of`` of the last vector remembered (``None``: none yet)."""
        history = self.history
        if type(history) is PackedHistory:
            return history.latest_as_of()
        return history[-1].as_of if history else None


def _put(held: array, at: int, size: int, value: Iterable[float]) -> None:
    """``held[at:at + size] = value``, refused unless ``value`` has ``size`` items."""
    values = array("d", value)
    if len(values) != size:
        raise ValueError(f"{size} values expected, got {len(values)}")
    held[at:at + size] = values


def _counter(held: str, at: int, size: int) -> property:
    """A counter of ``InvestorProfileState.decayed`` or ``totals`` by name: a float, or
    a tuple of several. A tuple, not an array: item assignment on a copy would be lost
    without a word, where it changed the state before the counters were packed; and a
    value of another length would shift every counter after it, so it is refused."""
    if size == 1:
        def get(self: InvestorProfileState) -> float:
            return getattr(self, held)[at]

        def put(self: InvestorProfileState, value: float) -> None:
            getattr(self, held)[at] = value
    else:
        end = at + size or None

        def get(self: InvestorProfileState) -> tuple:  # type: ignore[misc]
            return tuple(getattr(self, held)[at:end])

        def put(self: InvestorProfileState, value: Iterable[float]) -> None:  # type: ignore[misc]
            values = array("d", value)
            if len(values) != size:
                raise ValueError(f"{size} values expected in {held}[{at}:], got {len(values)}")
            getattr(self, held)[at:end] = values
    return property(get, put, doc=f"In ``{held}``, from {at}: {size}.")


for _name, (_at, _size) in _AT.items():
    setattr(InvestorProfileState, _name, _counter("decayed", _at, _size))
InvestorProfileState.dwell = _counter("totals", _DWELL, 4)  # type: ignore[attr-defined]
InvestorProfileState.seek_dwell = _counter("totals", _SEEK_DWELL, 2)  # type: ignore[attr-defined]


# ------------------------------------------------ features of the stated profile
# They read nothing but the stated profile, so they live with it: the state caches them
# (``InvestorProfileState.profile_features``) and operators/features.py reads the cache.

def profile_features(state: InvestorProfileState) -> dict[str, float]:
    """The features that depend on the stated profile only (cached between changes)."""
    return {
        "stated_esg": stated_esg_strength(state),
        "ticket_known": float(state.ticket_max is not None),
        "profile_completeness": profile_completeness(state),
        "contactable": float(is_contactable(state)),
        "institutional": float(state.investor_type in INSTITUTIONAL),
    }


def stated_esg_strength(state: InvestorProfileState) -> float:
    """How strongly the investor *says* ESG matters, 0-1."""
    score = 0.0
    if state.min_epc_rank is not None:
        score += {0: 0.35, 1: 0.35, 2: 0.3, 3: 0.2, 4: 0.1}.get(state.min_epc_rank, 0.0)
    if state.required_certifications:
        score += 0.2
    if state.sfdr_target == "article_9":
        score += 0.3
    elif state.sfdr_target == "article_8":
        score += 0.2
    if state.uk_sdr_label:
        score += 0.15
    if state.max_climate_risk is not None:
        score += 0.1
    return min(1.0, score)


def profile_completeness(state: InvestorProfileState) -> float:
    if not state.has_profile:
        return 0.0
    present = sum((
        state.investor_type is not None,
        state.jurisdiction is not None,
        bool(state.consents),
        state.ticket_max is not None,
        bool(state.target_countries),
        bool(state.target_assets),
        state.risk_tolerance is not None,
        state.contact_ref is not None,
    ))
    return present / PROFILE_FIELDS


def is_contactable(state: InvestorProfileState) -> bool:
    email = state.consents.get("email") in ("opted_in", "soft_opt_in") and not state.unsubscribed
    # Consent to be called outranks a do-not-call listing, as in the compliance packs.
    phone = state.consents.get("phone") == "opted_in"
    return email or phone
