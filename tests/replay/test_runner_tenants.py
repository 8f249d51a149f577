"""Two tenants' ``inv-1`` through a whole replay: tenant A's erasure removes A's lead,
review case and handoff, and leaves B's, in the Parquet outputs, in ``esg-leads diff``
and in the summary's counts (stop 29's review: keyed by the investor id alone, A's
tombstone deleted B's records too).

The recordings (tests/two_tenants.py): a generated world of two tenants whose two
reviewed investors are renamed ``inv-1``, each tenant's reviewer approving its case;
once as is, once with A's erasure of ``inv-1`` after everything else. What the erasure
did is the difference between the two runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from esg_leads.cli.main import main
from esg_leads.connectors.parquet_sink import read_records
from esg_leads.replay.diff import compare, load_run
from tests.two_tenants import TENANT_A, TENANT_B, replayed

KINDS = ("leads", "review", "handoff")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("two-tenants")
    return replayed(root, erase=False), replayed(root, erase=True)


def _of(run: Path, kind: str, tenant: str) -> dict[str, dict]:
    """``tenant``'s records of ``inv-1`` in a run's ``kind`` output, by idempotency key."""
    return {r["idempotency_key"]: {k: v for k, v in r.items() if k != "processed_at"}
            for r in read_records(run / f"{kind}.parquet")
            if (r["tenant"], r["investor_id"]) == (tenant, "inv-1")}


def test_both_tenants_inv_1_are_scored_reviewed_and_handed_off(runs: tuple[Path, Path]) -> None:
    """The premise: before the erasure each tenant has a lead, a case and a handoff of
    its own ``inv-1`` (else the test below would prove nothing)."""
    before, _ = runs
    for tenant in (TENANT_A, TENANT_B):
        for kind in KINDS:
            assert _of(before, kind, tenant), (tenant, kind)
    [a], [b] = (list(_of(before, "handoff", t).values()) for t in (TENANT_A, TENANT_B))
    assert a["approved_by_review"] and b["approved_by_review"]


def test_the_two_tenants_cases_and_qualifications_have_ids_of_their_own(
        runs: tuple[Path, Path]) -> None:
    """Case and qualification ids name the tenant: on a4481ae both tenants' cases were
    ``case:inv-1:1`` and both handoffs ``q:inv-1:1``, one id to any tool keyed by it.
    Each tenant's reviewer decided its own case by its own id (no ``unknown_case``)."""
    before, _ = runs
    ids = {(t, kind): sorted(r[field] for r in _of(before, kind, t).values())
           for t in (TENANT_A, TENANT_B)
           for kind, field in (("review", "case_id"), ("handoff", "qualification_id"))}
    assert ids == {(t, kind): [f"{prefix}:{t}/inv-1:1"] for t in (TENANT_A, TENANT_B)
                   for kind, prefix in (("review", "case"), ("handoff", "q"))}
    assert not [r for r in read_records(before / "dlq.parquet") if r["reason"] == "unknown_case"]


def test_one_tenants_erasure_keeps_the_other_tenants_records(runs: tuple[Path, Path]) -> None:
    before, after = runs
    for kind in KINDS:
        assert _of(after, kind, TENANT_A) == {}, kind
        assert _of(after, kind, TENANT_B) == _of(before, kind, TENANT_B), kind
    # The audit trail: A's inv-1 keeps the erasure's own row only, B's keeps all of its.
    audit_before, audit_after = (pq.read_table(run / "audit").to_pylist() for run in runs)

    def rows(audit: list[dict], tenant: str) -> list[str]:
        return sorted(r["audit_id"] for r in audit
                      if (r["tenant"], r["investor_id"]) == (tenant, "inv-1"))

    assert [r["agent"] for r in audit_after
            if (r["tenant"], r["investor_id"]) == (TENANT_A, "inv-1")] == ["erasure"]
    assert rows(audit_after, TENANT_B) == rows(audit_before, TENANT_B) != []


def test_diff_of_the_two_runs_is_a_s_inv_1_and_nothing_else(
        runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    before, after = runs
    report = compare(load_run(before), load_run(after), sample=1000)
    for kind in KINDS:
        assert report[kind]["n_only_in_b"] == 0 and report[kind]["n_changed"] == 0, kind
        assert set(report[kind]["only_in_a"]) == set(_of(before, kind, TENANT_A)), kind
    assert main(["diff", str(before), str(after)]) == 1  # different: A's lead is gone
    assert "different:" in capsys.readouterr().out


def test_the_summary_counts_what_the_outputs_hold(runs: tuple[Path, Path]) -> None:
    before, after = runs
    summaries = [json.loads((run / "summary.json").read_text()) for run in runs]
    for run, summary in zip(runs, summaries, strict=True):
        assert summary["reconciled"]
        for kind in KINDS:
            assert summary["outputs"][kind] == pq.read_metadata(run / f"{kind}.parquet").num_rows
    erasures = summaries[1]["topics"]["investor.erasure"]
    assert erasures["in"] == summaries[0]["topics"].get("investor.erasure", {"in": 0})["in"] + 1
    assert erasures["dead_lettered"] == 0
    for kind in KINDS:  # the erasure took A's inv-1 records and nothing else
        assert (summaries[0]["outputs"][kind] - summaries[1]["outputs"][kind]
                == len(_of(before, kind, TENANT_A))), kind


def test_no_step_changes_a_shared_dict_in_place(runs: tuple[Path, Path]) -> None:
    """Review of stop 30: consents and stated-profile features are one dict per distinct
    content, shared by the investors of every tenant (operators/compact.py); a write
    into one would reach every holder, another tenant's included. After two whole
    replays each shared dict still holds exactly the content it was filed under."""
    from esg_leads.operators import compact

    assert len(compact._SHARED) > 1
    changed = [key for key, d in compact._SHARED.items() if key != repr(list(d.items()))]
    assert not changed
