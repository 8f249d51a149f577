"""InvestorShard: point-in-time labels, re-scoring after silence, erasure, profiles."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from pydantic import ValidationError

from esg_leads.operators.kept_vectors import KeptVector, PackedHistory
from esg_leads.operators.investor_state import InvestorShard
from esg_leads.operators.investor_window import WindowAggregate
from esg_leads.schemas.codec import decode_event, encode
from esg_leads.schemas.outputs import DeadLetter
from esg_leads.schemas.records import (
    CatalogMix,
    EnrichedEngagement,
    FeatureVector,
    Ingested,
    InvestorNotice,
    InvestorWindow,
    LabelledExample,
    SilenceDue,
)
from esg_leads.schemas.settings import Settings

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
NOW = datetime(2026, 4, 1, tzinfo=timezone.utc)
MIN, HOUR, DAY = timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
EMAIL = "jane.doe@example.com"
_offsets = iter(range(10**9))


def ingest(topic: str, payload: dict) -> Ingested:
    payload = {"tenant": "acme", "source": "test", **payload}
    value = orjson.dumps(payload)
    return Ingested(decode_event(topic, value), topic, 0, next(_offsets), 1_772_000_000_000,
                    payload["investor_id"].encode(), value)


def touch(event_id: str, when: datetime, investor: str = "inv-1", action: str = "email_open"):
    return ingest("investor.engagements", {"event_id": event_id, "event_time": when.isoformat(),
                                           "investor_id": investor, "action": action,
                                           "channel": "email"})


def window(end: datetime, investor: str = "inv-1", actions=("email_open",)) -> InvestorWindow:
    aggregate = WindowAggregate()
    for i, action in enumerate(actions):
        item = touch(f"w-{investor}-{end.timestamp():.0f}-{i}", end - 30 * MIN, investor, action)
        aggregate.add(EnrichedEngagement(item, None, CatalogMix(0, 0.0, 0.0, 0.0)), stale_days=365)
    return InvestorWindow("acme", investor, end - HOUR, end, aggregate)


def outcome(event_id: str, when: datetime, kind: str = "qualified", investor: str = "inv-1"):
    return ingest("crm.outcomes", {"event_id": event_id, "event_time": when.isoformat(),
                                   "investor_id": investor, "kind": kind})


def erasure(event_id: str, when: datetime, investor: str = "inv-1"):
    return ingest("investor.erasure", {"event_id": event_id, "event_time": when.isoformat(),
                                       "investor_id": investor})


def profile(event_id: str, when: datetime, investor: str = "inv-1", **extra):
    return ingest("investor.profiles", {"event_id": event_id, "event_time": when.isoformat(),
                                        "investor_id": investor, "investor_type": "family_office",
                                        "subscriber_type": "individual", "jurisdiction": "GB",
                                        **extra})


def of(kind: type, out: list) -> list:
    return [o for o in out if isinstance(o, kind)]


def dead_letters(out: list) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(encode(o)) for o in out if isinstance(o, dict)]


@pytest.fixture
def shard() -> InvestorShard:
    return InvestorShard(Settings())


# ------------------------------------------------------------- point-in-time

def test_label_carries_the_vector_scored_before_the_outcome_never_a_later_one(shard):
    first = of(FeatureVector, shard.process([window(T0)], NOW))
    second = of(FeatureVector, shard.process([window(T0 + HOUR, actions=("reply", "meeting_booked"))], NOW))
    assert [v.as_of for v in first + second] == [T0, T0 + HOUR]
    assert first[0].features != second[0].features
    out = shard.process([outcome("o1", T0 + 30 * MIN)], NOW)
    (example,) = of(LabelledExample, out)
    # Exactly the features emitted for 10:00 (the history keeps them without context).
    assert example.features.features == first[0].features
    assert example.features.values == first[0].values
    assert example.features.as_of == T0
    assert example.features == first[0].features_only()  # every field, rebuilt exactly
    # Kept compact in between (issue 16): packed, values as doubles, no feature dict.
    history = shard.investors["inv-1"].history
    assert type(history) is PackedHistory and all(type(v) is KeptVector for v in history)
    assert (example.label, example.outcome_time, example.outcome_event_id) == (True, T0 + 30 * MIN, "o1")
    assert shard.counts[("labels", "acme")] == 1


def test_outcome_at_a_window_end_uses_that_window(shard):
    shard.process([window(T0), window(T0 + HOUR)], NOW)
    (example,) = of(LabelledExample, shard.process([outcome("o1", T0 + HOUR, "disqualified")], NOW))
    assert example.features.as_of == T0 + HOUR and example.label is False


def test_outcome_before_any_score_gives_no_example(shard):
    out = shard.process([outcome("o1", T0)], NOW)
    assert of(LabelledExample, out) == []
    (notice,) = of(InvestorNotice, out)
    assert (notice.kind, notice.detail, notice.context) == ("outcome", "qualified", None)
    assert shard.counts[("outcomes_without_score", "acme")] == 1
    # An investor known only by a profile, or scored only after the outcome: still no example.
    shard.process([profile("p1", T0, investor="inv-2"), window(T0 + HOUR, investor="inv-3")], NOW)
    out = shard.process([outcome("o2", T0, investor="inv-2"), outcome("o3", T0, investor="inv-3")], NOW)
    assert of(LabelledExample, out) == []
    assert shard.counts[("outcomes_without_score", "acme")] == 3
    assert shard.counts[("labels", "acme")] == 0


@pytest.mark.parametrize("kind", ["meeting_held", "deal_won", "deal_lost"])
def test_other_outcomes_are_notices_not_labels(shard, kind):
    shard.process([window(T0)], NOW)
    out = shard.process([outcome("o1", T0 + MIN, kind)], NOW)
    assert of(LabelledExample, out) == []
    (notice,) = of(InvestorNotice, out)
    assert notice.kind == "outcome" and notice.detail == kind
    assert shard.counts[("outcomes_without_score", "acme")] == 0


def test_duplicate_outcome_is_dead_lettered_not_learned_twice(shard):
    shard.process([window(T0)], NOW)
    first = shard.process([outcome("o1", T0 + MIN)], NOW)
    again = shard.process([outcome("o1", T0 + MIN)], NOW)
    assert len(of(LabelledExample, first)) == 1
    assert of(LabelledExample, again) == [] and of(InvestorNotice, again) == []
    (letter,) = dead_letters(again)
    assert letter.reason == "duplicate" and letter.value_b64 is not None


# --------------------------------------------------------------- re-scoring
# Re-score points are planned and timed on the tenant's clock by the intake
# (tests/operators/test_investor_window.py); the shard re-scores when told.

def silence(due: datetime, planned_for: datetime, investor: str = "inv-1") -> SilenceDue:
    return SilenceDue("acme", investor, due, planned_for)


def test_rescore_after_silence_measures_recency_from_the_last_activity(shard):
    (scored,) = of(FeatureVector, shard.process([window(T0)], NOW))
    out = shard.process([silence(T0 + 3 * DAY, T0)], NOW)
    (rescore,) = of(FeatureVector, out)
    assert rescore.investor_id == "inv-1" and rescore.as_of == T0 + 3 * DAY
    assert rescore.features["recency_days"] == pytest.approx(3.0)
    assert scored.features["recency_days"] == 60.0  # first ever activity: nothing before it
    assert rescore.features["eng_1d"] < scored.features["eng_1d"]  # counters decayed
    assert shard.counts[("rescores", "acme")] == 1


def test_the_shards_own_items_never_time_a_rescore(shard):
    """Only the tenant's clock does: a shard's next item may come hours after the
    re-score point (then a reviewer decided the case before it was published), or never."""
    shard.process([window(T0)], NOW)
    later = shard.process([profile("p", T0 + 9 * DAY, investor="other"),
                           window(T0 + 9 * DAY, investor="other"), outcome("o", T0 + 9 * DAY)],
                          NOW)
    assert [v.investor_id for v in of(FeatureVector, later)] == ["other"]
    assert shard.counts[("rescores", "acme")] == 0


def test_rescore_is_remembered_for_later_labels(shard):
    shard.process([window(T0), silence(T0 + 3 * DAY, T0)], NOW)
    (example,) = of(LabelledExample, shard.process([outcome("o1", T0 + 5 * DAY)], NOW))
    assert example.features.as_of == T0 + 3 * DAY


def test_an_outcome_before_the_rescore_is_published_joins_the_last_published_vector(shard):
    """Point in time is what the flow had scored: a re-score the tenant's clock has not
    reached yet was never seen by anyone, whatever the outcome's own event time."""
    shard.process([window(T0)], NOW)
    (example,) = of(LabelledExample, shard.process([outcome("o1", T0 + 4 * DAY)], NOW))
    assert example.features.as_of == T0


def test_a_rescore_planned_before_newer_activity_is_ignored(shard):
    shard.process([window(T0)], NOW)
    shard.process([window(T0 + 2 * DAY)], NOW)
    assert shard.process([silence(T0 + 3 * DAY, T0)], NOW) == []
    (rescore,) = of(FeatureVector, shard.process([silence(T0 + 5 * DAY, T0 + 2 * DAY)], NOW))
    assert rescore.as_of == T0 + 5 * DAY
    assert rescore.features["recency_days"] == pytest.approx(3.0)


def test_a_rescore_of_an_unknown_or_erased_investor_is_ignored(shard):
    assert shard.process([silence(T0 + 3 * DAY, T0, investor="nobody")], NOW) == []
    shard.process([window(T0), erasure("x1", T0 + HOUR)], NOW)
    assert shard.process([silence(T0 + 3 * DAY, T0)], NOW) == []


def test_rescores_planned_by_a_snapshot_of_the_previous_version_still_fall_due(shard):
    """That version planned them in the shard and timed them by its own items; its
    snapshot's plans drain that way, new ones come from the tenant's clock."""
    shard.process([window(T0)], NOW)
    shard._due = [((T0 + 3 * DAY).timestamp(), "inv-1", T0.timestamp())]  # noqa: SLF001
    assert of(FeatureVector, shard.process([profile("p", T0 + 3 * DAY, investor="other")], NOW)) == []
    (rescore,) = of(FeatureVector, shard.process([profile("q", T0 + 4 * DAY, investor="other")], NOW))
    assert rescore.as_of == T0 + 3 * DAY and not shard._due  # noqa: SLF001


# ------------------------------------------------------------------- erasure

# ------------------------------------------- a profile that completes a thin lead

def test_a_profile_that_brings_the_missing_compliance_facts_rescores_the_investor_then(shard):
    """A lead in needs_info waits for exactly these facts: it is scored again when they
    arrive, with them, not at the investor's next engagement (which may never come)."""
    (first,) = of(FeatureVector, shard.process([window(T0)], NOW))
    assert first.context.jurisdiction is None
    out = shard.process([profile("p1", T0 + DAY)], NOW)
    (vector,) = of(FeatureVector, out)
    assert vector.as_of == T0 + DAY
    assert (vector.context.jurisdiction, vector.context.subscriber_type) == ("GB", "individual")
    assert vector.features != first.features  # profile features now count
    assert [type(o).__name__ for o in out] == ["InvestorNotice", "FeatureVector"]
    # Remembered for later labels, as any score is.
    (example,) = of(LabelledExample, shard.process([outcome("o1", T0 + 2 * DAY)], NOW))
    assert example.features.as_of == T0 + DAY


def test_a_profile_is_no_rescore_when_nothing_was_scored_or_nothing_was_missing(shard):
    assert of(FeatureVector, shard.process([profile("p1", T0)], NOW)) == []  # never scored
    shard.process([window(T0 + HOUR)], NOW)
    # An update of a complete profile changes no compliance fact: the lifecycle's notice
    # handles consents; the next window scores it.
    assert of(FeatureVector, shard.process([profile("p2", T0 + DAY, risk_tolerance="low")],
                                           NOW)) == []


def test_a_late_profile_rescores_no_earlier_than_the_last_score(shard):
    shard.process([window(T0), window(T0 + DAY)], NOW)
    (vector,) = of(FeatureVector, shard.process([profile("p1", T0 + HOUR)], NOW))
    assert vector.as_of == T0 + DAY


def test_erasure_drops_state_and_dead_letters_later_events(shard):
    shard.process([window(T0), profile("p1", T0)], NOW)
    out = shard.process([erasure("x1", T0 + HOUR)], NOW)
    (notice,) = of(InvestorNotice, out)
    assert notice.kind == "erasure" and notice.context is None
    assert "inv-1" not in shard.investors
    later = shard.process([profile("p2", T0 + 2 * HOUR), outcome("o1", T0 + 2 * HOUR),
                           touch("u1", T0 + 2 * HOUR, action="unsubscribe"),
                           erasure("x2", T0 + 2 * HOUR)], NOW)
    letters = dead_letters(later)
    assert len(letters) == len(later) == 4
    assert {d.reason for d in letters} == {"erased_subject"}
    assert all(d.value_b64 is None for d in letters)
    # A window accepted before the erasure yields nothing; no re-score for the erased investor.
    assert shard.process([window(T0 + 2 * HOUR)], NOW) == []
    assert shard.process([SilenceDue("acme", "inv-1", T0 + 3 * DAY, T0)], NOW) == []
    assert "inv-1" not in shard.investors


def test_erasure_leaves_other_investors_alone(shard):
    shard.process([window(T0), window(T0, investor="inv-2")], NOW)
    shard.process([erasure("x1", T0 + HOUR)], NOW)
    assert len(of(FeatureVector, shard.process([window(T0 + HOUR, investor="inv-2")], NOW))) == 1


def test_erased_investor_id_is_not_kept_in_the_snapshot(shard):
    investor = "investor-with-a-distinctive-id"
    shard.process([window(T0, investor=investor)], NOW)
    shard.process([erasure("x1", T0 + HOUR, investor=investor)], NOW)
    assert investor.encode() not in pickle.dumps(shard)


# ------------------------------------------------------------------ profiles

def test_contact_details_are_never_kept_in_clear(shard):
    contact = {"name": "Jane Doe", "email": EMAIL, "phone": "+44 20 7946 0958"}
    out = shard.process([profile("p1", T0, contact=contact), window(T0 + HOUR)], NOW)
    blob = pickle.dumps(shard)
    for secret in (EMAIL, "Jane Doe", "7946 0958", "79460958"):
        assert secret.encode() not in blob
    (notice,) = of(InvestorNotice, out)
    ref = notice.context.contact_ref
    assert ref is not None and EMAIL not in ref
    assert of(FeatureVector, out)[0].context.contact_ref == ref
    assert EMAIL not in repr(out)


def test_contact_ref_matches_the_same_person_and_only_them(shard):
    refs = []
    for i, email in enumerate([EMAIL, "Jane.Doe@Example.COM", "john@example.com"]):
        out = shard.process([profile(f"p{i}", T0, investor=f"inv-{i}", contact={"email": email})], NOW)
        refs.append(of(InvestorNotice, out)[0].context.contact_ref)
    assert refs[0] == refs[1] != refs[2]
    other_salt = InvestorShard(Settings.model_validate({"contact_hash_salt": "another"}))
    out = other_salt.process([profile("p9", T0, contact={"email": EMAIL})], NOW)
    assert of(InvestorNotice, out)[0].context.contact_ref != refs[0]
    no_contact = shard.process([profile("p8", T0, investor="inv-8")], NOW)
    assert of(InvestorNotice, no_contact)[0].context.contact_ref is None


def test_profile_notice_carries_consent_and_preferences(shard):
    out = shard.process([profile("p1", T0, consents=[{"channel": "email", "status": "opted_in"},
                                                      {"channel": "phone", "status": "none"}],
                                 preferences={"min_epc_band": "B", "sfdr_target": "article_8"},
                                 ticket_max_eur=1e7, do_not_call=True)], NOW)
    (notice,) = of(InvestorNotice, out)
    ctx = notice.context
    assert notice.kind == "profile"
    assert ctx.consents == {"email": "opted_in", "phone": "none"}
    assert (ctx.min_epc_band, ctx.sfdr_target, ctx.ticket_max_eur, ctx.do_not_call) == ("B", "article_8", 1e7, True)
    assert ctx.unsubscribed is False


def test_an_unsubscribe_outranks_an_older_profiles_email_consent(shard):
    consents = [{"channel": "email", "status": "opted_in"}, {"channel": "phone", "status": "opted_in"}]
    shard.process([profile("p1", T0, consents=consents)], NOW)
    out = shard.process([touch("u1", T0 + HOUR, action="unsubscribe")], NOW)
    (notice,) = of(InvestorNotice, out)
    assert notice.kind == "unsubscribe"
    assert notice.context.unsubscribed and notice.context.consents["email"] == "opted_out"
    # The CRM re-sends the older profile afterwards: email stays opted out, phone is untouched.
    out = shard.process([profile("p0", T0 - DAY, consents=consents)], NOW)
    ctx = of(InvestorNotice, out)[0].context
    assert ctx.consents == {"email": "opted_out", "phone": "opted_in"}
    vector = of(FeatureVector, shard.process([window(T0 + 2 * HOUR)], NOW))[0]
    assert vector.context.consents["email"] == "opted_out"


def test_unsubscribe_without_a_profile_creates_state(shard):
    out = shard.process([touch("u1", T0, action="unsubscribe")], NOW)
    assert of(InvestorNotice, out)[0].context.consents == {"email": "opted_out"}
    assert shard.counts[("used", "investor.engagements")] == 1


def test_duplicate_profile_is_dead_lettered(shard):
    shard.process([profile("p1", T0)], NOW)
    (letter,) = dead_letters(shard.process([profile("p1", T0)], NOW))
    assert letter.reason == "duplicate" and letter.event_id == "p1"
    assert shard.counts[("used", "investor.profiles")] == 1


def test_an_event_the_stage_does_not_handle_becomes_a_processing_error(shard):
    stray = ingest("crm.outcomes", {"event_id": "o1", "event_time": T0.isoformat(),
                                    "investor_id": "inv-1", "kind": "qualified"})
    stray = stray._replace(topic="esg.property-signals")  # a topic routed here by mistake
    out = shard.process([stray, profile("p1", T0)], NOW)
    (letter,) = dead_letters(out)
    assert letter.reason == "processing_error"
    assert len(of(InvestorNotice, out)) == 1  # the flow goes on


def test_review_decisions_pass_through_in_order_without_moving_the_clock(shard):
    """Decisions reach the lifecycle through the investor shard (one ordered lane);
    the shard neither acts on them nor lets a reviewer's clock trigger re-scores."""
    review = ingest("lead.review-decisions", {"event_id": "r1",
                                              "event_time": (T0 + 30 * DAY).isoformat(),
                                              "investor_id": "inv-1", "case_id": "c1",
                                              "verdict": "approve", "reviewer": "rev-1"})
    out = shard.process([profile("p1", T0), review], NOW)
    assert out[-1] is review and not dead_letters(out)


# ------------------------------------------------------------------ snapshots

def test_snapshot_continues_identically(shard):
    shard.process([profile("p1", T0, consents=[{"channel": "email", "status": "opted_in"}],
                           contact={"email": EMAIL}),
                   window(T0), window(T0 + HOUR, actions=("reply",)),
                   window(T0 + HOUR, investor="inv-2")], NOW)
    restored = pickle.loads(pickle.dumps(shard))
    rest = [
        [outcome("o1", T0 + 90 * MIN)],
        [window(T0 + 2 * DAY, investor="inv-2"), touch("u1", T0 + 2 * DAY, action="unsubscribe")],
        [profile("p2", T0 + 5 * DAY, investor="inv-3"),
         SilenceDue("acme", "inv-1", T0 + 3 * DAY + HOUR, T0 + HOUR)],  # a re-score
        [erasure("x1", T0 + 6 * DAY, investor="inv-2"), outcome("o2", T0 + 6 * DAY, "deal_won")],
        [outcome("o1", T0 + 90 * MIN)],  # a redelivery
    ]
    for batch in rest:
        a, b = shard.process(batch, NOW), restored.process(batch, NOW)
        assert a == b
        assert a  # every batch produces something
    assert shard.counts == restored.counts


def test_settings_with_other_half_lives_are_accepted():
    settings = Settings.model_validate({"features": {"half_lives": ["P1D", "P7D", "P30D"]}})
    assert len(of(FeatureVector, InvestorShard(settings).process([window(T0)], NOW))) == 1


def test_half_lives_must_be_short_medium_long():
    """The features eng_1d/7d/30d read three counters: settings refuse any other count."""
    with pytest.raises(ValidationError, match="half_lives"):
        Settings.model_validate({"features": {"half_lives": ["P1D", "P7D"]}})
    settings = Settings.model_validate({"features": {"half_lives": ["PT12H", "P3D", "P14D"]}})
    assert len(of(FeatureVector, InvestorShard(settings).process([window(T0)], NOW))) == 1


def test_feed_status_reaches_the_vectors_after_it_windows_and_rescores_alike(shard):
    """The intake sends the tenant's FeedStatus when a source goes stale or recovers; the
    shard's vectors from then on carry it, the re-scores it releases too."""
    from esg_leads.schemas.records import FeedStatus, SourceFeed

    (before,) = of(FeatureVector, shard.process([window(T0)], NOW))
    assert before.feeds is None
    status = FeedStatus("acme", (T0 + DAY).timestamp(),
                        (SourceFeed("epc-register", 3600.0, T0.timestamp(), 0.5),))
    assert shard.process([status], NOW) == []
    out = shard.process([window(T0 + DAY + HOUR, investor="inv-2"),
                         silence(T0 + 3 * DAY, T0)], NOW)  # inv-1's re-score, on the tenant clock
    vectors = of(FeatureVector, out)
    assert [(v.investor_id, v.feeds) for v in vectors] == [("inv-2", status), ("inv-1", status)]
    # Learning keeps no feed status: labels join features as they were.
    assert shard.investors["inv-1"].features_as_of(T0 + 4 * DAY).feeds is None
