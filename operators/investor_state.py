"""The investor stage: long-horizon state per investor, features, point-in-time labels.

One :class:`InvestorShard` holds the investors of one (tenant, shard) key. It
receives closed windows, silence re-score points, profiles, CRM outcomes,
unsubscribes and erasure requests, and emits:

* a :class:`~schemas.records.FeatureVector` for every investor with activity in a
  closed window, and for every investor whose silence reached a re-score point
  (:class:`~schemas.records.SilenceDue`, sent by the tenant's intake when the
  tenant's watermark reaches it), to scoring;
* a :class:`~schemas.records.LabelledExample` for every qualified/disqualified
  outcome, joined to the feature vector the investor had when last scored *before*
  the outcome's event time — never a later one, which would leak the label;
* :class:`~schemas.records.InvestorNotice` records for the lead lifecycle;
* dead letters (dicts) for duplicates and events about erased investors.
"""

from __future__ import annotations

import heapq
from collections import Counter
from datetime import datetime, timezone

from esg_leads.operators.dedup import EventIdDedup
from esg_leads.operators.features import build_vector, investor_context
from esg_leads.operators.investor_profile import InvestorProfileState
from esg_leads.operators.property_catalog import salted_id
from esg_leads.operators.validation import dead_letter, processing_error
from esg_leads.schemas.inputs import InvestorProfile
from esg_leads.schemas.outputs import DlqReason
from esg_leads.schemas.records import (
    FeedStatus,
    Ingested,
    InvestorNotice,
    InvestorWindow,
    LabelledExample,
    SilenceDue,
)
from esg_leads.schemas.settings import Settings

AGENT_VERSION = "investor-state/1"
#: CRM outcome kinds that are labels for the qualification model.
LABELS = {"qualified": True, "disqualified": False}


def contact_ref(salt: str, profile: InvestorProfile) -> str | None:
    """A salted hash of the contact details: lets a CRM match, reveals nothing."""
    contact = profile.contact
    if contact is None or (contact.email is None and contact.phone is None):
        return None
    key = (contact.email or "").strip().lower() + "|" + (contact.phone or "").replace(" ", "")
    return salted_id(salt, key)


class InvestorShard:
    """State of the investors of one (tenant, shard) key."""

    def __init__(self, settings: Settings) -> None:
        self._half_lives = tuple(h.total_seconds() / 86_400 for h in settings.features.half_lives)
        self._salt = settings.contact_hash_salt.get_secret_value()
        self._dedup = EventIdDedup(settings.dedup.horizon)
        self.counts: Counter[tuple[str, str]] = Counter()
        self.investors: dict[str, InvestorProfileState] = {}
        self._erased: set[str] = set()
        #: Re-scores planned by a snapshot of the version that kept them here: (due
        #: timestamp, investor id, last activity it was planned for). Drained as that
        #: version did, by this shard's own items; new ones are planned on the tenant's
        #: clock (operators/investor_window.py), so this stays empty in a new run.
        self._due: list[tuple[float, str, float]] = []
        #: The latest event time this shard has processed (for the snapshot's re-scores).
        self._clock = float("-inf")
        #: The tenant's watched signal sources, as of the latest change the intake sent
        #: (a source went stale or recovered); ``None``: none stale yet.
        self._feeds: FeedStatus | None = None

    @property
    def _handlers(self) -> dict:
        return {
            "investor.profiles": self._on_profile,
            "crm.outcomes": self._on_outcome,
            "investor.erasure": self._on_erasure,
            "investor.engagements": self._on_unsubscribe,  # only unsubscribes come this way
        }

    def process(self, items: list, now: datetime) -> list:
        """Handle a batch of closed windows and investor events, in arrival order."""
        out: list = []
        for item in items:
            if type(item) is Ingested and item.topic == "lead.review-decisions":
                out.append(item)  # for the lifecycle, through this shard's ordered lane
                continue
            if type(item) is FeedStatus:
                # Before the re-scores this item's successors release: those up to its
                # time are then judged on what the catalog knew then.
                self._feeds = item
                continue
            if type(item) is SilenceDue:
                out.extend(self.on_silence(item))
                continue
            if self._due:
                when = (item.window_end if isinstance(item, InvestorWindow)
                        else item.event.event_time).timestamp()
                if when > self._clock:
                    # As the version that planned them did: those due before this item
                    # (one due at this instant waits, a window closing now supersedes it).
                    out.extend(self._rescore_due(before=when))
                    self._clock = when
            if isinstance(item, InvestorWindow):
                out.extend(self.on_window(item))
            else:
                try:
                    out.extend(self.on_event(item, now))
                except Exception as error:  # noqa: BLE001 - errors are data here
                    out.append(processing_error(item, error, now))
        return out

    def on_silence(self, due: SilenceDue) -> list:
        """The investor's re-score as of ``due.due``, unless erased or active since."""
        state = self.investors.get(due.investor_id)
        if state is None or state.last_active != due.planned_for:
            return []  # erased, or a later window closed since: that activity re-planned it
        return [self._rescore(state, due.investor_id, due.due)]

    def _rescore(self, state: InvestorProfileState, investor_id: str, as_of: datetime):
        state.decay_to(as_of, self._half_lives)
        # A snapshot from before feed degradation has no ``_feeds``.
        vector = build_vector(state, state.tenant, investor_id, as_of,
                              self.__dict__.get("_feeds"))
        if vector.clamped:
            self.counts[("features_clamped", vector.tenant)] += 1
        state.remember(vector)
        self.counts[("rescores", vector.tenant)] += 1
        return vector

    def _rescore_due(self, before: float) -> list:
        """A snapshot's planned re-scores (see ``_due``) due before ``before``."""
        out = []
        due = self._due
        while due and due[0][0] < before:
            at, investor_id, planned_for = heapq.heappop(due)
            state = self.investors.get(investor_id)
            if state is None or state.last_active is None or \
                    state.last_active.timestamp() != planned_for:
                continue  # erased, or active again since: that activity re-planned it
            out.append(self._rescore(state, investor_id,
                                     datetime.fromtimestamp(at, tz=timezone.utc)))
        return out

    def _state(self, investor_id: str) -> InvestorProfileState:
        state = self.investors.get(investor_id)
        if state is None:
            state = self.investors[investor_id] = InvestorProfileState(self._half_lives)
        return state

    def _erased_subject(self, investor_id: str) -> bool:
        return bool(self._erased) and salted_id(self._salt, investor_id) in self._erased

    # ------------------------------------------------------------ windows

    def on_window(self, window: InvestorWindow) -> list:
        if self._erased_subject(window.investor_id):
            return []  # accepted before the erasure; nothing may be derived from it now
        state = self._state(window.investor_id)
        state.apply_window(window.aggregate, window.window_end, self._half_lives)  # type: ignore[arg-type]
        state.tenant = window.tenant
        self.counts[("feature_vectors", window.tenant)] += 1
        vector = build_vector(state, window.tenant, window.investor_id, window.window_end,
                              self.__dict__.get("_feeds"))
        if vector.clamped:
            self.counts[("features_clamped", window.tenant)] += 1
        state.remember(vector)
        return [vector]

    # ------------------------------------------------------------- events

    def on_event(self, ingested: Ingested, now: datetime) -> list:
        event = ingested.event
        investor_id = event.investor_id  # type: ignore[attr-defined]
        if self._erased_subject(investor_id):
            return [dead_letter(ingested, DlqReason.ERASED_SUBJECT,
                                "investor has been erased; payload withheld", now,
                                withhold_value=True)]
        if not self._dedup.first_time(f"{ingested.topic}/{event.event_id}", event.event_time):  # type: ignore[attr-defined]
            return [dead_letter(ingested, DlqReason.DUPLICATE,
                                f"event_id {event.event_id!r} already processed", now)]  # type: ignore[attr-defined]
        topic = ingested.topic
        handler = self._handlers.get(topic)
        if handler is None:
            raise ValueError(f"investor stage does not handle topic {topic!r}")
        out = handler(ingested)
        self.counts[("used", topic)] += 1
        return out

    def _notice(self, ingested: Ingested, kind: str, state: InvestorProfileState | None,
                detail: str | None = None) -> InvestorNotice:
        event = ingested.event
        return InvestorNotice(
            tenant=event.tenant,  # type: ignore[attr-defined]
            investor_id=event.investor_id,  # type: ignore[attr-defined]
            kind=kind,
            event_time=event.event_time,  # type: ignore[attr-defined]
            ref=ingested.ref(),
            context=investor_context(state) if state is not None else None,
            detail=detail,
        )

    def _on_profile(self, ingested: Ingested) -> list:
        profile: InvestorProfile = ingested.event  # type: ignore[assignment]
        state = self._state(profile.investor_id)
        completes = bool(state.history) and (state.jurisdiction is None or state.subscriber_type is None)
        state.apply_profile(profile, contact_ref(self._salt, profile))
        out: list = [self._notice(ingested, "profile", state)]
        if completes:
            # A scored investor whose profile lacked what compliance needs (a lead in
            # needs_info waits for exactly this): score again now, with the profile,
            # rather than at the next engagement, which a silent investor never sends.
            # Never before the last score: history stays in as-of order (point-in-time).
            as_of = max(profile.event_time, state.latest_as_of())  # type: ignore[type-var]
            out.append(self._rescore(state, profile.investor_id, as_of))
        return out

    def _on_unsubscribe(self, ingested: Ingested) -> list:
        state = self._state(ingested.event.investor_id)  # type: ignore[attr-defined]
        state.unsubscribe(ingested.event.event_time)  # type: ignore[attr-defined]
        return [self._notice(ingested, "unsubscribe", state)]

    def _on_outcome(self, ingested: Ingested) -> list:
        outcome = ingested.event
        kind = outcome.kind.value  # type: ignore[attr-defined]
        state = self.investors.get(outcome.investor_id)  # type: ignore[attr-defined]
        out: list = [self._notice(ingested, "outcome", state, detail=kind)]
        label = LABELS.get(kind)
        if label is None or state is None:
            if label is not None:
                self.counts[("outcomes_without_score", outcome.tenant)] += 1  # type: ignore[attr-defined]
            return out
        vector = state.features_as_of(outcome.event_time)  # type: ignore[attr-defined]
        if vector is None:
            self.counts[("outcomes_without_score", outcome.tenant)] += 1  # type: ignore[attr-defined]
            return out
        self.counts[("labels", outcome.tenant)] += 1  # type: ignore[attr-defined]
        out.append(LabelledExample(
            tenant=outcome.tenant,  # type: ignore[attr-defined]
            investor_id=outcome.investor_id,  # type: ignore[attr-defined]
            features=vector,
            label=label,
            outcome_time=outcome.event_time,  # type: ignore[attr-defined]
            outcome_event_id=outcome.event_id,  # type: ignore[attr-defined]
        ))
        return out

    def _on_erasure(self, ingested: Ingested) -> list:
        investor_id = ingested.event.investor_id  # type: ignore[attr-defined]
        self.investors.pop(investor_id, None)
        self._erased.add(salted_id(self._salt, investor_id))
        if any(entry[1] == investor_id for entry in self._due):
            # Nothing about an erased investor may stay in clear, not even a pending re-score.
            self._due = [entry for entry in self._due if entry[1] != investor_id]
            heapq.heapify(self._due)
        return [self._notice(ingested, "erasure", None)]
