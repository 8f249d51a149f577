"""Where a lead goes after a score: the lifecycle's routing rule, as one pure function.

The order of the checks is the policy: a blocked lead is suppressed whatever its score;
a lead the CRM or a person owns stays theirs; only a strong new signal revives a
disqualified lead; a lead whose profile lacks what compliance needs is asked for it
(``needs_info``) rather than sent to a person; review reasons go to a person; model
uncertainty alone never hands a lead off.

>>> from esg_leads.schemas.settings import Settings
>>> s = Settings()
>>> target_state("scored", 0.9, blocked=False, reasons=[], missing=[], uncertain=False,
...              settings=s)
'handed_off'
>>> target_state("scored", 0.9, blocked=False, reasons=[], missing=[], uncertain=True,
...              settings=s)
'planned'
>>> target_state("in_review", 0.1, blocked=True, reasons=[], missing=[], uncertain=False,
...              settings=s)
'suppressed'
"""

from __future__ import annotations

from esg_leads.schemas.settings import Settings


def target_state(state: str, p: float, *, blocked: bool, reasons: list[dict],
                 missing: list[str], uncertain: bool, settings: Settings) -> str:
    """The state a lead in ``state`` should be in after a score of probability ``p``."""
    if blocked:
        return "suppressed"
    if state in ("handed_off", "in_review"):
        return state  # the CRM, or a person, owns the lead now
    cfg = settings.lifecycle
    if state == "disqualified" and p < cfg.qualification_threshold:
        return state  # only a strong new signal revives a disqualified lead
    if missing:
        # Worth contacting, but compliance cannot decide how: ask for the facts
        # (once asked, the lead waits for them, whatever its next scores).
        if state == "needs_info" or p >= settings.scoring.warm:
            return "needs_info"
        return "scored"
    if reasons:
        return "in_review"
    if uncertain:
        return "planned"  # never a handoff on a score the model is unsure of
    if p >= cfg.qualification_threshold:
        return "handed_off"
    return "planned" if p >= settings.scoring.warm else "scored"


def why(target: str, p: float, reasons: list[dict], missing: list[str],
        settings: Settings) -> str:
    """The transition's reason, as the audit trail and the lead's history show it."""
    if target == "needs_info":
        return ("profile too thin to check compliance (missing "
                + ", ".join(missing) + "): information requested")
    if target == "suppressed":
        return "no lawful contact channel (compliance verdict blocked)"
    if target == "in_review":
        return "review needed: " + ", ".join(r["code"] for r in reasons)
    if target == "handed_off":
        return (f"qualified: probability {p:.2f} >= "
                f"{settings.lifecycle.qualification_threshold:.2f}, nothing to review")
    if target == "planned":
        return f"worth outreach: probability {p:.2f}"
    return f"below outreach threshold: probability {p:.2f}"
