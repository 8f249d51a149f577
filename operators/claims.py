"""The anti-greenwashing check: an ESG claim stands only on verified, current data.

The rules are data (``compliance_packs/claims.toml``): each claim lists the named
predicates below that the property's facts (or the fund's own disclosures) must
satisfy. The check keeps supported claims with their evidence, and removes the
rest with the reason, so that the plan and the audit trail say what was not said.

>>> from datetime import date, datetime, timezone
>>> from esg_leads.schemas.records import PropertyFacts
>>> facts = PropertyFacts("p-1", "acme", datetime(2026, 1, 1, tzinfo=timezone.utc), "GB",
...     "office", 2e7, "B", 2, None, True, False, "BREEAM excellent", 90.0, 18.0, 20,
...     True, date(2025, 10, 1).toordinal(), True, True)
>>> check = ClaimCheck(stale_days=365)
>>> kept, removed = check.check([("p-1", "energy_efficient"), ("p-1", "certified")],
...                             {"p-1": facts}, date(2026, 3, 1).toordinal(), fund={})
>>> [c["claim"] for c in kept], [(r["claim"], r["reason"][:40]) for r in removed]
(['energy_efficient'], [('certified', 'not supported: certified_verified (Direc')])
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path

from esg_leads.schemas.records import PropertyFacts
from esg_leads.schemas.rules import ClaimRules

CLAIMS_FILE = Path(__file__).parent / "compliance_packs" / "claims.toml"

Predicate = Callable[[PropertyFacts | None, int, float, dict], bool]


def _age_days(facts: PropertyFacts, today: int) -> int:
    return today - facts.data_as_of_ordinal


#: Named predicates the claim rules refer to: (facts, today's ordinal, stale days, fund).
PREDICATES: dict[str, Predicate] = {
    "high_epc": lambda f, t, s, fund: f is not None and f.high_epc,
    "third_party": lambda f, t, s, fund: f is not None and f.third_party,
    "fresh": lambda f, t, s, fund: f is not None and _age_days(f, t) <= s,
    "certified_verified": lambda f, t, s, fund: f is not None and f.certified_verified,
    "low_climate_risk": lambda f, t, s, fund: f is not None and f.low_climate_risk,
    "fund_sfdr_article_8": lambda f, t, s, fund: fund.get("sfdr") in ("article_8", "article_9"),
    "fund_sfdr_article_9": lambda f, t, s, fund: fund.get("sfdr") == "article_9",
    "fund_uk_sdr_label": lambda f, t, s, fund: fund.get("uk_sdr_label") is not None,
}
#: Why each predicate holds, for the claim's evidence line.
_EVIDENCE = {
    "high_epc": lambda f, fund: f"EPC {f.epc_band}" if f.epc_band else f"ENERGY STAR {f.energy_star_score}",
    "third_party": lambda f, fund: "third-party verified data",
    "fresh": lambda f, fund: f"data as of {date.fromordinal(f.data_as_of_ordinal).isoformat()}",
    "certified_verified": lambda f, fund: f"{f.certification} (verified)",
    "low_climate_risk": lambda f, fund: f"max physical climate risk {f.max_climate_risk}/100",
    "fund_sfdr_article_8": lambda f, fund: f"fund discloses under SFDR {fund.get('sfdr')}",
    "fund_sfdr_article_9": lambda f, fund: "fund discloses under SFDR article 9",
    "fund_uk_sdr_label": lambda f, fund: f"fund holds UK SDR label {fund.get('uk_sdr_label')}",
}


@cache
def load_claim_rules(path: Path = CLAIMS_FILE) -> dict[str, tuple[list[str], str]]:
    rules = ClaimRules.model_validate(tomllib.loads(path.read_text()))
    unknown = {p for rule in rules.claims for p in rule.requires} - PREDICATES.keys()
    if unknown:
        raise ValueError(f"claim rules name unknown predicates: {sorted(unknown)}")
    return {rule.claim: (rule.requires, rule.citation) for rule in rules.claims}


class ClaimCheck:
    """Checks proposed ``(property_id, claim)`` pairs against the facts behind them."""

    def __init__(self, stale_days: float) -> None:
        self.stale_days = stale_days
        self.rules = load_claim_rules()

    def check(self, proposed: list[tuple[str, str]], facts: dict[str, PropertyFacts],
              today: int, fund: dict) -> tuple[list[dict], list[dict]]:
        kept, removed = [], []
        for property_id, claim in proposed:
            requires, citation = self.rules[claim]
            f = facts.get(property_id)
            failing = [p for p in requires if not PREDICATES[p](f, today, self.stale_days, fund)]
            if failing:
                removed.append({"property_id": property_id, "claim": claim,
                                "reason": f"not supported: {', '.join(failing)} ({citation})"[:256]})
            else:
                evidence = "; ".join(_EVIDENCE[p](f, fund) for p in requires)
                kept.append({"property_id": property_id, "claim": claim, "evidence": evidence[:256]})
        return kept, removed

    def rule_ids(self, proposed: list[tuple[str, str]]) -> list[str]:
        return sorted({f"claims:{claim}" for _, claim in proposed})
