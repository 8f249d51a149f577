"""Review case and qualification ids name the tenant (``case:<tenant>/<investor>:<n>``).

Stop 30 keyed the outputs ``<tenant>/<investor_id>`` because tenants may share an
investor id, but left the derived ids ``case:<investor>:<n>`` and ``q:<investor>:<n>``:
two tenants' ``inv-1`` opened cases with the same id, so a review tool, the audit,
``esg-leads explain`` or a CRM keyed by case id merged them. Cases opened before keep
their id across a restore and are decided by it; an id of either form decides only the
case of the decision's own tenant that carries exactly that id.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from esg_leads.operators.lifecycle import LifecycleShard
from esg_leads.schemas.codec import validate_record
from esg_leads.schemas.common import DERIVED_ID_MAX, DerivedId
from esg_leads.schemas.keys import case_id, qualification_id
from esg_leads.schemas.settings import Settings
from tests.operators.test_lifecycle import (
    KEY,
    NOW,
    OTHER_KEY,
    SETTINGS,
    check_records,
    decision,
    of,
    scored,
)
from tests.two_tenants import _of_tenant

KEYS = {"acme": KEY, "beta": OTHER_KEY}
#: Both tenants' lifecycle shards pickled by a4481ae's code, each with ``inv-1``'s case
#: ``case:inv-1:1`` open (made by /tmp/s31/caseid/make_snapshot.py with main on the path:
#: the ``scored(0.52)`` lead of tests/operators/test_lifecycle.py, once per tenant).
OLD_SNAPSHOT = Path(__file__).parent / "snapshots" / "lifecycle_a4481ae.pickle"


def open_cases() -> dict[str, tuple[LifecycleShard, dict]]:
    """Each tenant's shard (one per tenant, as the flow keys them) with its ``inv-1``'s
    review case open, opened by the same scoring at the same instant."""
    opened = {}
    for tenant in KEYS:
        shard = LifecycleShard(SETTINGS)
        out = shard.process([_of_tenant(scored(0.52), tenant)], NOW)
        check_records(out)
        [case] = of(out, "review")
        opened[tenant] = shard, case
    return opened


def decide(shard: LifecycleShard, tenant: str, case: str, event_id: str) -> list:
    return shard.process([decision(case, "approve", event_id, tenant=tenant,
                                   key=KEYS[tenant])], NOW)


def test_two_tenants_inv_1_get_two_case_ids_and_each_decision_closes_its_own() -> None:
    """On a4481ae both cases were ``case:inv-1:1``: B's reviewer, holding A's case id
    from a shared review tool, decided B's case with it."""
    opened = open_cases()
    (a, case_a), (b, case_b) = opened["acme"], opened["beta"]
    assert case_a["case_id"] == "case:acme/inv-1:1" and case_b["case_id"] == "case:beta/inv-1:1"
    # B's reviewer sends A's case id, validly signed by B: not B's case.
    out = decide(b, "beta", case_a["case_id"], "d-b1")
    assert [d["reason"] for d in of(out, "dlq")] == ["unknown_case"] and not of(out, "handoff")
    assert b.leads["inv-1"].open_case == case_b["case_id"]
    # A's own decision closes A's case; B's stays open.
    out = decide(a, "acme", case_a["case_id"], "d-a1")
    check_records(out)
    [handoff_a] = of(out, "handoff")
    assert handoff_a["qualification_id"] == "q:acme/inv-1:1"
    assert a.leads["inv-1"].open_case is None and b.leads["inv-1"].open_case == case_b["case_id"]
    out = decide(b, "beta", case_b["case_id"], "d-b2")
    [handoff_b] = of(out, "handoff")
    assert handoff_b["qualification_id"] == "q:beta/inv-1:1" != handoff_a["qualification_id"]
    assert b.leads["inv-1"].open_case is None
    # The audit names the tenant's own case.
    assert [r["reason"] for r in of(out, "audit") if r["agent"] == "state-machine"] == [
        "reviewer rev-7 decided approve on case:beta/inv-1:1"]


def test_an_old_form_id_decides_only_its_own_tenants_case_of_that_number() -> None:
    """``case:inv-1:1`` was each tenant's first case of ``inv-1`` before stop 31, and
    recordings of then carry decisions by that name: within the signing tenant's leads it
    names that tenant's case 1 of ``inv-1`` and nothing else (never another number,
    another investor, nor the other tenant's case)."""
    cases = open_cases()
    shard, case = cases["beta"]
    for stale in ("case:inv-1:2", "case:inv-2:1", "case:inv-1:01"):
        out = decide(shard, "beta", stale, f"d-{stale}")
        assert [d["reason"] for d in of(out, "dlq")] == ["unknown_case"]
        assert shard.leads["inv-1"].open_case == case["case_id"]
    out = decide(shard, "beta", "case:inv-1:1", "d-old")
    check_records(out)
    [handoff] = of(out, "handoff")
    assert handoff["qualification_id"] == "q:beta/inv-1:1" and shard.leads["inv-1"].open_case is None
    [row] = [a for a in of(out, "audit") if "decided" in (a.get("reason") or "")]
    assert row["reason"].endswith(f"on {case['case_id']} (named case:inv-1:1)")
    acme, acme_case = cases["acme"]
    assert acme.leads["inv-1"].open_case == acme_case["case_id"]  # the other tenant's: open


def test_a_case_restored_from_an_a4481ae_snapshot_is_decided_by_its_old_id() -> None:
    """A case opened before the upgrade was published as ``case:inv-1:1``; the reviewer
    decides it by that id after a restore, and the lead's next case gets the new form."""
    shards = {tenant: LifecycleShard.restore(shard, SETTINGS)
              for tenant, shard in pickle.loads(OLD_SNAPSHOT.read_bytes()).items()}
    assert {t: s.leads["inv-1"].open_case for t, s in shards.items()} == {
        "acme": "case:inv-1:1", "beta": "case:inv-1:1"}
    # The new form of the same case is not the id it was published under.
    out = decide(shards["acme"], "acme", case_id("acme", "inv-1", 1), "d-new")
    assert [d["reason"] for d in of(out, "dlq")] == ["unknown_case"]
    out = decide(shards["acme"], "acme", "case:inv-1:1", "d-old")
    check_records(out)
    [handoff] = of(out, "handoff")
    assert handoff["qualification_id"] == "q:acme/inv-1:1" and handoff["approved_by_review"]
    # Decided in A's shard only: B's case of the same old id is still open (a decision
    # reaches the shard of its own tenant, the one whose key signed it).
    assert shards["acme"].leads["inv-1"].open_case is None
    assert shards["beta"].leads["inv-1"].open_case == "case:inv-1:1"
    # The lead's next case, after a needs_info, is of the new form.
    beta = shards["beta"]
    out = beta.process([decision("case:inv-1:1", "needs_info", "d-b", tenant="beta",
                                 key=OTHER_KEY)], NOW)
    assert of(out, "leads")[0]["state"] == "planned"
    scored_again = _of_tenant(scored(0.53, 6), "beta")
    [case2] = of(beta.process([scored_again], NOW), "review")
    assert case2["case_id"] == "case:beta/inv-1:2"


LONGEST_TENANT = "t" + "-x" * 15 + "z"  # 32 characters, TENANT_ID_PATTERN's maximum
LONGEST_INVESTOR = "I" + "d.:-" * 15 + "end"  # 64 characters, ENTITY_ID_PATTERN's maximum


@pytest.mark.parametrize("n", [1, 10**24 - 1])
def test_the_longest_legal_ids_make_derived_ids_that_fit_their_schema(n: int) -> None:
    """DerivedId holds ``case:`` + the longest tenant + ``/`` + the longest investor id +
    ``:`` + a counter of up to 24 digits (a review case must never fail its own schema:
    stop 30's review found that a lead then sat in review for good)."""
    assert (len(LONGEST_TENANT), len(LONGEST_INVESTOR)) == (32, 64)
    derived = TypeAdapter(DerivedId)
    made = (case_id(LONGEST_TENANT, LONGEST_INVESTOR, n),
            qualification_id(LONGEST_TENANT, LONGEST_INVESTOR, n))
    for text in made:
        assert derived.validate_python(text) == text and len(text) <= DERIVED_ID_MAX
    with pytest.raises(ValidationError):  # the bound is a bound
        derived.validate_python(made[0].ljust(DERIVED_ID_MAX + 1, "0"))


def test_a_lead_of_the_longest_tenant_and_investor_ids_is_reviewed_and_handed_off() -> None:
    tenant = LONGEST_TENANT
    settings = Settings.model_validate({
        "tenants": {tenant: {"reviewers": ["rev-7"], "review_signing_key": KEY}},
        "lifecycle": {"uncertain_review_after": 0}})
    shard = LifecycleShard(settings)
    out = shard.process([_of_tenant(scored(0.52, investor_id=LONGEST_INVESTOR), tenant)], NOW)
    check_records(out)
    [case] = of(out, "review")
    assert case["case_id"] == f"case:{tenant}/{LONGEST_INVESTOR}:1"
    out = shard.process([decision(case["case_id"], "approve", investor_id=LONGEST_INVESTOR,
                                  tenant=tenant)], NOW)
    check_records(out)
    [handoff] = of(out, "handoff")
    validate_record("crm.handoff", handoff)
    assert handoff["qualification_id"] == f"q:{tenant}/{LONGEST_INVESTOR}:1"
