"""Outreach messages: templates per channel and language, verified claims only, nothing logged."""

from __future__ import annotations

import html
import logging
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esg_leads.operators.outreach_messages import TEMPLATE_DIR, language_for, phrasebook, render_plan
from esg_leads.schemas.codec import encode, validate_record
from esg_leads.schemas.outputs import DroppedStep, OutreachMessage

CLAIMS = ("energy_efficient", "certified", "low_climate_risk", "sfdr_article_8",
          "sfdr_article_9", "uk_sdr_label")
#: Words that state an ESG claim, in every shipped language: a line of a message that
#: has one must be a verified claim's sentence, word for word.
CLAIM_WORDS = re.compile(r"energy|certif|climate|SFDR|SDR|Energieeff|Zertifiz|Klimarisiko",
                         re.IGNORECASE)


def step(order: int, channel: str, trigger: str = "plan approved") -> dict:
    return {"order": order, "channel": channel, "action": f"contact by {channel}",
            "wait_days": 0, "trigger": trigger, "escalation": False}


def plan(steps: list[dict], properties: list[str], kept: list[tuple[str, str]]) -> dict:
    return {"plan_id": "plan:acme:inv-1:1", "agent_version": "outreach/1", "steps": steps,
            "time_zones": [], "lead_properties": properties,
            "claims": [{"property_id": p, "claim": c, "evidence": f"evidence for {c} of {p}"}
                       for p, c in kept]}


def removed(pairs: list[tuple[str, str]]) -> list[dict]:
    return [{"property_id": p, "claim": c, "reason": "not supported: fresh"} for p, c in pairs]


def lines_of(message: dict) -> list[str]:
    out = [message["subject"] or ""] + message["text"].splitlines()
    if message["html"]:
        out += html.unescape(re.sub(r"<[^>]+>", "\n", message["html"])).splitlines()
    return [line.strip().removeprefix("- ") for line in out if line.strip()]


def verified_sentences(language: str, kept: list[dict]) -> set[str]:
    book = phrasebook(language)
    return {book[c["claim"]].format(property=c["property_id"], evidence=c["evidence"])
            for c in kept}


plans = st.builds(
    lambda channels, properties, proposed, split, jurisdiction: (
        plan([step(i + 1, c) for i, c in enumerate(channels)], properties,
             [p for i, p in enumerate(proposed) if split[i % len(split)]]),
        removed([p for i, p in enumerate(proposed) if not split[i % len(split)]]),
        jurisdiction),
    st.lists(st.sampled_from(("email", "phone", "meeting_invite", "sms")), min_size=1,
             max_size=4),
    st.lists(st.sampled_from(("p-1", "p-2", "p-3")), min_size=1, max_size=3, unique=True),
    st.lists(st.tuples(st.sampled_from(("p-1", "p-2", "p-3")), st.sampled_from(CLAIMS)),
             max_size=8, unique=True),
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.sampled_from(("GB", "DE", "US", "AT", "SG", None)),
)


@settings(max_examples=150, deadline=None)
@given(plans)
def test_every_claim_in_every_rendered_message_is_a_verified_one(case):
    the_plan, the_removed, jurisdiction = case
    rendered = render_plan(the_plan, "acme", jurisdiction, the_removed)
    assert rendered.dropped == []  # the shipped templates render every channel
    assert [m["order"] for m in rendered.messages] == [s["order"] for s in the_plan["steps"]]
    kept = {f"{c['property_id']}:{c['claim']}" for c in the_plan["claims"]}
    for message in rendered.messages:
        OutreachMessage.model_validate_json(encode(message))
        allowed = verified_sentences(message["language"], the_plan["claims"])
        for line in lines_of(message):
            if CLAIM_WORDS.search(line):
                assert line in allowed, (message["template"], line)
        assert set(message["claims"]) <= kept
        if message["channel"] == "email" and the_plan["claims"]:
            assert set(message["claims"]) == kept  # the briefing states every verified claim


def _templates_with(tmp_path: Path, name: str, body: str) -> Path:
    shutil.copytree(TEMPLATE_DIR, tmp_path / "t")
    (tmp_path / "t" / name).write_text(body)
    return tmp_path / "t"


def test_a_template_asking_for_an_unverified_claim_drops_its_step_with_the_reason(tmp_path):
    templates = _templates_with(tmp_path, "phone.en.txt.j2",
                                'Say: {{ claim("p-1", "energy_efficient") }} {{ claim("p-2", "certified") }}')
    the_plan = plan([step(1, "email"), step(2, "phone")], ["p-1", "p-2"],
                    [("p-1", "energy_efficient")])
    rendered = render_plan(the_plan, "acme", "GB", removed([("p-2", "certified")]),
                           templates=templates)
    assert [m["channel"] for m in rendered.messages] == ["email"]
    (dropped,) = rendered.dropped
    DroppedStep.model_validate_json(encode(dropped))
    assert dropped["order"] == 2 and dropped["channel"] == "phone"
    assert "did not verify: certified on p-2" in dropped["reason"]
    assert [s["order"] for s in rendered.plan["steps"]] == [1]  # not sent
    assert [s["order"] for s in the_plan["steps"]] == [1, 2]  # the lead's plan is untouched
    # Asking for a verified one renders.
    ok = _templates_with(tmp_path / "ok", "phone.en.txt.j2", 'Say: {{ claim("p-1", "energy_efficient") }}')
    assert render_plan(the_plan, "acme", "GB", [], templates=ok).dropped == []


def test_a_removed_claim_written_into_a_template_by_hand_drops_the_step(tmp_path):
    templates = _templates_with(tmp_path, "sms.en.txt.j2",
                                "p-2 holds a verified green-building certification, see you!")
    the_plan = plan([step(1, "sms")], ["p-2"], [])
    rendered = render_plan(the_plan, "acme", "GB", removed([("p-2", "certified")]),
                           templates=templates)
    assert rendered.messages == []
    assert "certified on p-2, which the compliance check removed" in rendered.dropped[0]["reason"]


@pytest.mark.parametrize("body, reason", [
    ("Dear {{ investor_name }}", "UndefinedError"),  # StrictUndefined: nothing is guessed
    ("{{ claims.__class__.__mro__ }}", "SecurityError"),  # sandboxed
    ("{{ 'x' * 400 }}", "longer than the sms limit"),
])
def test_a_template_that_cannot_render_drops_its_step(tmp_path, body, reason):
    templates = _templates_with(tmp_path, "sms.en.txt.j2", body)
    rendered = render_plan(plan([step(1, "email"), step(2, "sms")], ["p-1"], []), "acme", "GB",
                           [], templates=templates)
    assert [m["channel"] for m in rendered.messages] == ["email"]
    assert reason in rendered.dropped[0]["reason"]


def test_a_channel_without_any_template_is_dropped(tmp_path):
    templates = tmp_path / "t"
    shutil.copytree(TEMPLATE_DIR, templates)
    (templates / "sms.en.txt.j2").unlink()
    (templates / "sms.de.txt.j2").unlink()
    rendered = render_plan(plan([step(1, "sms")], ["p-1"], []), "acme", "DE", [],
                           templates=templates)
    assert rendered.dropped[0]["reason"] == "no message template for channel sms"


def test_html_email_is_autoescaped_and_plain_text_is_not():
    evidence = 'BREEAM <script>alert("x")</script> & co'
    the_plan = plan([step(1, "email")], ["p-1"], [])
    the_plan["claims"] = [{"property_id": "p-1", "claim": "certified", "evidence": evidence}]
    (message,) = render_plan(the_plan, "acme", "GB", []).messages
    assert "<script>" not in message["html"] and "&lt;script&gt;" in message["html"]
    assert "&amp; co" in message["html"] and evidence in message["text"]
    assert message["claims"] == ["p-1:certified"]


def test_the_language_follows_the_jurisdiction_and_falls_back_per_channel():
    assert (language_for("DE"), language_for("GB"), language_for(None)) == ("de", "en", "en")
    the_plan = plan([step(1, "email"), step(2, "meeting_invite")], ["p-1"],
                    [("p-1", "energy_efficient")])
    email, invite = render_plan(the_plan, "acme", "DE", []).messages
    assert (email["language"], email["template"]) == ("de", "email.de")
    assert "Energieeffizienzklasse" in email["text"] and email["subject"].startswith("ESG-Überblick")
    assert (invite["language"], invite["template"]) == ("en", "meeting_invite.en")


def test_an_info_request_asks_for_the_missing_facts_and_states_no_claim():
    info = {"order": 1, "channel": "email", "action": "ask for the missing profile facts: "
            "jurisdiction", "wait_days": 0, "trigger": "lead needs info", "escalation": False}
    (message,) = render_plan(plan([info], [], []), "acme", None, []).messages
    assert "we need to know: jurisdiction" in message["text"] and message["claims"] == []


def test_rendered_text_is_never_logged(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    the_plan = plan([step(1, "email"), step(2, "sms")], ["p-1"], [("p-1", "energy_efficient")])
    rendered = render_plan(the_plan, "acme", "GB", [])
    bad = _templates_with(tmp_path, "sms.en.txt.j2", "secret {{ nope }}")
    failed = render_plan(the_plan, "acme", "GB", [], templates=bad)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for message in rendered.messages + failed.messages:
        for part in (message["text"], message["subject"], message["html"]):
            assert not part or part.strip() not in logged
    assert "secret" not in failed.dropped[0]["reason"]  # a reason names the problem only


def test_a_handoff_with_messages_is_a_valid_crm_handoff_record():
    from datetime import datetime, timezone

    the_plan = plan([step(1, "email"), step(2, "phone")], ["p-1"], [("p-1", "certified")])
    rendered = render_plan(the_plan, "acme", "GB", [])
    at = datetime(2026, 3, 2, tzinfo=timezone.utc)
    handoff = validate_record("crm.handoff", {
        "schema_version": 1, "idempotency_key": "handoff:acme:inv-1:q1",
        "qualification_id": "q:inv-1:1", "tenant": "acme", "investor_id": "inv-1",
        "event_time": at, "processed_at": at, "score": 80, "probability": 0.8, "tier": "hot",
        "esg_alignment_score": 70, "esg_min_epc_band": None, "esg_required_certifications": [],
        "sfdr_target": None, "uk_sdr_label": None, "target_asset_classes": [],
        "target_countries": [], "ticket_max_eur": None, "consent": {}, "contact_ref": None,
        "outreach_plan": rendered.plan,
        "compliance": {"verdict": "allowed", "pack": "UK", "agent_version": "compliance/1",
                       "allowed_channels": ["email", "phone"], "blocked_channels": [],
                       "removed_claims": [], "rules_applied": []},
        "approved_by_review": False, "messages": rendered.messages,
        "dropped_steps": rendered.dropped})
    assert [m.channel for m in handoff.messages] == ["email", "phone"]


def test_the_lifecycles_handoff_carries_a_message_for_every_step_it_sends():
    from esg_leads.operators.lifecycle import LifecycleShard
    from tests.operators.test_lifecycle import NOW, SETTINGS, scored

    out = LifecycleShard(SETTINGS).process([scored(0.8)], NOW)
    [handoff] = [e.record for e in out if e.kind == "handoff"]
    validate_record("crm.handoff", handoff)
    steps = handoff["outreach_plan"]["steps"]
    assert steps and handoff["dropped_steps"] == []
    assert [(m["order"], m["channel"]) for m in handoff["messages"]] == [
        (s["order"], s["channel"]) for s in steps]
    verified = {f"{c['property_id']}:{c['claim']}" for c in handoff["outreach_plan"]["claims"]}
    assert all(set(m["claims"]) <= verified for m in handoff["messages"])
    # The audit trail names no message text.
    audit = "\n".join(str(e.record) for e in out if e.kind == "audit")
    assert all(m["text"].strip() not in audit for m in handoff["messages"])
