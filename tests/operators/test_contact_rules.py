"""Contact rules: quiet hours in local time and frequency caps (operators/contact_rules.py).

The property tests check the schedule with an oracle written differently from the code
(local wall-clock comparison per zone, a brute count per sliding window), over random
policies, zones (with DST, half-hour and 45-minute offsets), waits and histories.
"""

from __future__ import annotations

import math
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from esg_leads.operators.compliance import DO_NOT_CONTACT_RULE, ComplianceAgent, load_packs
from esg_leads.operators.contact_rules import (
    MEDIUM,
    contact_pairs,
    kept_contacts,
    schedule,
    schedule_plan,
    zones_for,
)
from esg_leads.schemas.inputs import InvestorProfile
from esg_leads.schemas.rules import ContactPolicy

ZONES = ["Europe/London", "America/New_York", "Pacific/Honolulu", "Asia/Kathmandu",
         "Australia/Lord_Howe", "Asia/Singapore", "America/St_Johns", "Pacific/Chatham", "UTC"]
CHANNELS = ["email", "phone", "sms", "meeting_invite"]
UTC = timezone.utc


def in_quiet(at: datetime, start: time, end: time, zone: ZoneInfo) -> bool:
    """Oracle: is ``at`` within [start, end) of local wall-clock time (wrapping midnight)?"""
    local = at.astimezone(zone)
    minutes = local.hour * 60 + local.minute + local.second / 60
    lo, hi = start.hour * 60 + start.minute, end.hour * 60 + end.minute
    return lo <= minutes < hi if lo < hi else (minutes >= lo or minutes < hi)


@st.composite
def policies(draw) -> ContactPolicy:
    quiet = []
    for i in range(draw(st.integers(0, 2))):
        start = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45])))
        end = time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45])))
        if start == end:
            continue
        quiet.append({"id": f"q{i}", "channels": draw(st.lists(st.sampled_from(CHANNELS),
                                                                 min_size=1, unique=True)),
                      "start": start, "end": end, "citation": "test"})
    caps = [{"id": f"c{i}", "channel": channel, "max": draw(st.integers(1, 3)),
             "per_days": draw(st.integers(1, 10)), "citation": "test"}
            for i, channel in enumerate(draw(st.lists(st.sampled_from(["email", "phone", "sms"]),
                                                      unique=True)))]
    return ContactPolicy(time_zones={}, quiet_hours=quiet, caps=caps)


steps_strategy = st.lists(st.fixed_dictionaries({
    "channel": st.sampled_from(CHANNELS),
    "wait_days": st.sampled_from([0, 0.5, 1, 1.25, 2, 3, 7]),
}), max_size=6)
starts = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                      timezones=st.just(UTC))


@given(policies(), st.lists(st.sampled_from(ZONES), min_size=1, max_size=3, unique=True),
       steps_strategy, starts, st.lists(st.tuples(st.sampled_from(["email", "phone", "sms"]),
                                                   st.floats(0, 20 * 86_400)), max_size=6))
def test_no_scheduled_contact_falls_in_quiet_hours_or_breaks_a_cap(policy, zone_names, steps,
                                                                   start, ago):
    zones = tuple(ZoneInfo(name) for name in zone_names)
    history = [(medium, start.timestamp() - seconds) for medium, seconds in ago]
    planned, applied = schedule(steps, start, zones, policy, history)

    # Nothing lost silently: a step is either scheduled or named as unschedulable.
    assert len(planned) == len(steps) or any(a.startswith("unschedulable") for a in applied)
    assert [s["order"] for s in planned] == list(range(1, len(planned) + 1))
    previous = start
    for step in planned:
        assert step["at"].tzinfo is not None and step["at"].microsecond == 0
        # Never earlier than asked: after the previous step by at least its wait.
        assert step["at"] >= previous + timedelta(days=step["wait_days"]) - timedelta(seconds=1)
        previous = step["at"]
        medium = MEDIUM.get(step["channel"], step["channel"])
        for rule in policy.quiet_hours:
            if step["channel"] in rule.channels or medium in rule.channels:
                for zone in zones:
                    assert not in_quiet(step["at"], rule.start, rule.end, zone), (
                        rule, zone, step["at"].astimezone(zone))
    contacts = history + [(MEDIUM.get(s["channel"], s["channel"]), s["at"].timestamp())
                          for s in planned]
    for cap in policy.caps:
        per = cap.per_days * 86_400
        for step in planned:
            t = step["at"].timestamp()
            if MEDIUM.get(step["channel"], step["channel"]) != cap.channel:
                continue
            inside = [c for m, c in contacts if m == cap.channel and t - per < c <= t]
            assert len(inside) <= cap.max, (cap, step)


def test_the_input_steps_are_not_changed():
    steps = [{"order": 1, "channel": "phone", "wait_days": 0}]
    policy = ContactPolicy(time_zones={}, caps=[{"id": "c", "channel": "phone", "max": 1,
                                                 "per_days": 7, "citation": "x"}])
    planned, _ = schedule(steps, datetime(2026, 3, 2, 12, tzinfo=UTC), (UTC,), policy, [])
    assert "at" not in steps[0] and planned[0]["at"] == datetime(2026, 3, 2, 12, tzinfo=UTC)


# ---------------------------------------------------------------- the packs' rules


def policy_of(country: str) -> ContactPolicy:
    return load_packs()[country].contact


def first_call(country: str, start: datetime, zone: str | None = None) -> datetime:
    policy = policy_of(country)
    planned, _ = schedule([{"channel": "phone", "wait_days": 0}], start,
                          zones_for(policy, country, zone), policy, [])
    return planned[0]["at"]


def test_us_calls_keep_to_8am_9pm_in_the_stated_zone():
    # 03:00 UTC on 2 March = 22:00 in New York (EST): moved to 08:00 EST = 13:00 UTC.
    assert first_call("US", datetime(2026, 3, 2, 3, tzinfo=UTC), "America/New_York") == \
        datetime(2026, 3, 2, 13, tzinfo=UTC)
    # Same instant, Los Angeles (19:00 PST): allowed as is.
    assert first_call("US", datetime(2026, 3, 2, 3, tzinfo=UTC), "America/Los_Angeles") == \
        datetime(2026, 3, 2, 3, tzinfo=UTC)


def test_us_without_a_stated_zone_uses_hours_allowed_in_every_us_zone():
    # 14:00 UTC = 09:00 EST but 04:00 in Honolulu: wait for 08:00 HST = 18:00 UTC.
    at = first_call("US", datetime(2026, 3, 2, 14, tzinfo=UTC))
    assert at == datetime(2026, 3, 2, 18, tzinfo=UTC)
    assert at.astimezone(ZoneInfo("America/New_York")).hour == 13


def test_singapore_calls_between_9am_and_8pm_singapore_time():
    # 13:00 UTC = 21:00 SGT: the next 09:00 SGT is 01:00 UTC.
    assert first_call("SG", datetime(2026, 3, 2, 13, tzinfo=UTC)) == \
        datetime(2026, 3, 3, 1, tzinfo=UTC)
    assert first_call("SG", datetime(2026, 3, 2, 4, tzinfo=UTC)) == \
        datetime(2026, 3, 2, 4, tzinfo=UTC)  # 12:00 SGT


@pytest.mark.parametrize(("channel", "cap"), [("email", 2), ("phone", 2), ("sms", 1)])
def test_singapore_caps_per_channel_over_any_seven_days(channel, cap):
    policy = policy_of("SG")
    start = datetime(2026, 3, 2, 4, tzinfo=UTC)  # 12:00 SGT
    steps = [{"channel": channel, "wait_days": 0}] * (cap + 1)
    planned, applied = schedule(steps, start, zones_for(policy, "SG", None), policy, [])
    assert [s["at"] for s in planned[:cap]] == [start] * cap
    assert planned[cap]["at"] == start + timedelta(days=7)
    assert f"SG-POLICY-cap-{channel}" in applied


def test_a_meeting_invite_is_an_email_for_the_caps():
    policy = policy_of("SG")
    start = datetime(2026, 3, 2, 4, tzinfo=UTC)
    steps = [{"channel": "email", "wait_days": 0}, {"channel": "meeting_invite", "wait_days": 0},
             {"channel": "email", "wait_days": 0}]
    planned, _ = schedule(steps, start, zones_for(policy, "SG", None), policy, [])
    assert [s["at"] - start for s in planned] == [timedelta(0), timedelta(0), timedelta(days=7)]


def test_a_new_plan_counts_contacts_earlier_plans_made_and_drops_their_future_steps():
    policy = policy_of("GB")
    monday_noon = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
    steps = [{"channel": "email", "wait_days": 0}, {"channel": "email", "wait_days": 3}]
    first = schedule_plan(policy, "GB", None, [], steps, monday_noon)
    assert len(first.contacts) == 2 and first.zones == ["Europe/London"]
    # Re-planned a day later: the first e-mail was sent (counts), the second was not yet.
    later = monday_noon + 86_400
    second = schedule_plan(policy, "GB", None, first.contacts, steps, later)
    assert second.steps[0]["at"].timestamp() == later  # 1 of 2 e-mails used this week
    assert second.steps[1]["at"].timestamp() == monday_noon + 7 * 86_400  # the cap moves it
    assert "UK-POLICY-cap-email" in second.applied
    assert [c[1] for c in second.contacts] == [monday_noon, later, monday_noon + 7 * 86_400]


def test_every_pack_names_a_zone_for_every_jurisdiction_and_cites_its_contact_rules():
    for pack in {p.pack: p for p in load_packs().values()}.values():
        assert set(pack.jurisdictions) <= set(pack.contact.time_zones)
        for rule in [*pack.contact.quiet_hours, *pack.contact.caps]:
            assert rule.citation.strip() and rule.id.startswith(pack.pack + "-")


def test_a_pack_without_a_zone_for_a_jurisdiction_is_refused():
    from esg_leads.schemas.rules import RulePack
    with pytest.raises(ValidationError, match="no time zone for SG"):
        RulePack(pack="SG", name="t", jurisdictions=["SG"], opt_out="o", rules=[],
                 contact={"time_zones": {}})


def test_quiet_hours_covering_the_whole_day_are_refused():
    with pytest.raises(ValidationError, match="every hour"):
        ContactPolicy(time_zones={}, quiet_hours=[{"id": "q", "channels": ["phone"],
                                                    "start": time(8), "end": time(8),
                                                    "citation": "x"}])


# ------------------------------------------------------- do-not-contact, time zones


def test_the_agent_gives_each_jurisdiction_its_packs_contact_policy():
    agent = ComplianceAgent()
    assert agent.contact_policy("SG") is load_packs()["SG"].contact
    assert agent.contact_policy("DE") is load_packs()["FR"].contact  # one EU pack
    assert agent.contact_policy(None) is None and agent.contact_policy("BR") is None


def test_the_firms_do_not_contact_list_blocks_every_channel_whatever_the_consent():
    agent = ComplianceAgent()
    consents = {"email": "opted_in", "phone": "opted_in", "sms": "opted_in"}
    free = agent.channels("SG", "individual", consents, False)
    listed = agent.channels("SG", "individual", consents, False, do_not_contact=True)
    assert free.allowed == ["email", "sms", "phone"]
    assert listed.allowed == [] and DO_NOT_CONTACT_RULE in listed.rules_applied
    assert {b["channel"] for b in listed.blocked if b["rule_id"] == DO_NOT_CONTACT_RULE} == \
        {"email", "sms", "phone"}
    assert {b["reason"] for b in listed.blocked if b["rule_id"] == DO_NOT_CONTACT_RULE} == \
        {"on the firm's do-not-contact list"}
    assert DO_NOT_CONTACT_RULE == "FIRM-do-not-contact" and listed.pack == "SG"
    assert agent.verdict(listed, [], [])["verdict"] == "blocked"
    assert free.allowed == ["email", "sms", "phone"]  # the memo kept them apart


PROFILE = {"tenant": "acme-capital", "event_id": "p-1", "source": "crm",
           "event_time": "2026-03-02T10:00:00+00:00", "investor_id": "inv-1",
           "investor_type": "family_office", "subscriber_type": "individual",
           "jurisdiction": "SG"}


@pytest.mark.parametrize("zone", ["Asia/Singapore", "America/Argentina/Buenos_Aires", "UTC"])
def test_a_profile_may_state_a_known_time_zone(zone):
    assert InvestorProfile.model_validate_json(orjson.dumps({**PROFILE, "time_zone": zone})).time_zone == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "/etc/localtime",
                                  "Europe/" + "x" * 80, "", "Europe//London"])
def test_an_unknown_or_path_like_time_zone_is_a_schema_error_not_a_crash(zone):
    with pytest.raises(ValidationError):
        InvestorProfile.model_validate_json(orjson.dumps({**PROFILE, "time_zone": zone}))


@given(st.text(max_size=70))
def test_any_time_zone_text_validates_or_is_a_validation_error(text):
    try:
        InvestorProfile.model_validate_json(orjson.dumps({**PROFILE, "time_zone": text}))
    except ValidationError:
        pass


@given(st.lists(st.tuples(st.sampled_from(["email", "phone", "linkedin", "post"]),
                          st.floats(allow_nan=False, allow_infinity=False)), max_size=40))
def test_a_kept_contact_history_gives_back_its_pairs_bit_for_bit(pairs):
    """Issue 16: the lifecycle keeps a lead's contacts as shared media and an array."""
    kept = kept_contacts(pairs)
    assert contact_pairs(kept) == pairs
    assert [math.copysign(1, t) for _, t in contact_pairs(kept)] == [math.copysign(1, t) for _, t in pairs]
    assert contact_pairs(list(pairs)) == pairs  # a list: what snapshots of earlier versions hold
    if pairs:
        assert kept[0] is kept_contacts(list(pairs))[0]  # one tuple per sequence of media
