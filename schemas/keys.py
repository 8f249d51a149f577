"""The message key of the per-investor output topics: ``<tenant>/<investor_id>``.

``leads.scored``, ``leads.review``, ``crm.handoff`` and ``leads.shadow`` are shared by
every tenant of a deployment and compacted by key, so the key must name the tenant as
well as the investor: keyed by the investor id alone, two tenants' ``inv-1`` were one
key, compaction kept only the newer of the two leads, and one tenant's erasure
tombstone deleted the other's lead, review case and CRM copy. A tenant id never holds
``/`` (:data:`~schemas.common.TENANT_ID_PATTERN`), so the first ``/`` splits the key
unambiguously; an investor id holds none either (:data:`~schemas.common.ENTITY_ID_PATTERN`).

Tombstones carry the same key. ``ops.alerts`` keeps the tenant as key and
``leads.dlq`` the original message's key. :data:`KEY_VERSION` is the version of this
contract, sent as the ``key-version`` header and shown by ``esg-leads schema``
(``x-kafka-key-version``): 1 was the bare investor id.

>>> output_key("acme-capital", "inv-1")
'acme-capital/inv-1'
>>> parse_output_key(b"acme-capital/inv-1")
('acme-capital', 'inv-1')
>>> parse_output_key("inv-1")  # a key of the old contract names no tenant
Traceback (most recent call last):
...
ValueError: key 'inv-1' is not <tenant>/<investor_id>

The ids the flow derives for a lead name the tenant the same way: a review case
``case:<tenant>/<investor_id>:<n>`` and a qualification (handoff)
``q:<tenant>/<investor_id>:<n>``, so two tenants' ``inv-1`` never share a case id in a
review tool, the audit, ``esg-leads explain`` or a CRM. Until stop 31 they were
``case:<investor_id>:<n>`` and ``q:<investor_id>:<n>``; a case opened then and restored
from a snapshot keeps its id and is decided by it (the lifecycle compares ids exactly,
within the decision's own tenant).

>>> case_id("acme-capital", "inv-1", 2), qualification_id("acme-capital", "inv-1", 1)
('case:acme-capital/inv-1:2', 'q:acme-capital/inv-1:1')
>>> case_number("case:acme-capital/inv-1:2"), case_number("case:inv-1:2")  # either form
(2, 2)
>>> case_owner("case:acme-capital/inv-1:2"), case_owner("case:inv-1:2")
(('acme-capital', 'inv-1'), None)
"""

from __future__ import annotations

import re

from esg_leads.schemas.common import ENTITY_ID_PATTERN, TENANT_ID_PATTERN

#: Version of the key contract of the per-investor output topics (1: the investor id).
KEY_VERSION = 2
#: The output topics keyed by :func:`output_key` (tombstones included).
KEYED_BY_INVESTOR = frozenset(("leads.scored", "leads.review", "crm.handoff", "leads.shadow"))
#: How the key is described to consumers (``x-kafka-key`` of ``esg-leads schema``).
KEY_FORMAT = "<tenant>/<investor_id>"

_KEY = re.compile(f"({TENANT_ID_PATTERN[1:-1]})/({ENTITY_ID_PATTERN[1:-1]})")


def output_key(tenant: str, investor_id: str) -> str:
    """The message key of ``investor_id``'s records of ``tenant`` (both already valid:
    they come from validated events, and this is on every output's path)."""
    return f"{tenant}/{investor_id}"


def case_id(tenant: str, investor_id: str, n: int) -> str:
    """The id of ``investor_id``'s ``n``-th review case of ``tenant``."""
    return f"case:{output_key(tenant, investor_id)}:{n}"


def qualification_id(tenant: str, investor_id: str, n: int) -> str:
    """The id of ``investor_id``'s ``n``-th qualification (handoff) of ``tenant``."""
    return f"q:{output_key(tenant, investor_id)}:{n}"


def case_number(derived_id: str) -> int:
    """The counter ``n`` of a case or qualification id, of either form: what follows
    the last ``:`` (an investor id may hold ``:``, the counter never does)."""
    return int(derived_id.rsplit(":", 1)[1])


def names_case(given: str, open_case: str, tenant: str, investor_id: str) -> bool:
    """Whether a review decision's case id ``given`` names ``open_case``, the open case
    of ``investor_id`` in ``tenant`` (the tenant whose key signed the decision).

    Its own id, or the id the case would have had before stop 31,
    ``case:<investor_id>:<n>``: recordings made then carry decisions by that name, and
    within the signing tenant's leads it names exactly one case. Never a case of
    another tenant or investor, nor another number.

    >>> open_case = case_id("acme", "inv-1", 2)
    >>> [names_case(g, open_case, "acme", "inv-1") for g in
    ...  (open_case, "case:inv-1:2", "case:inv-1:1", "case:inv-2:2", case_id("beta", "inv-1", 2))]
    [True, True, False, False, False]
    >>> names_case("case:inv-1:2", open_case, "beta", "inv-1")
    False
    """
    if given == open_case:
        return True
    return (case_owner(open_case) == (tenant, investor_id)
            and given == f"case:{investor_id}:{case_number(open_case)}")


def is_case_of(given: str, tenant: str, investor_id: str) -> bool:
    """Whether ``given`` is a case id of ``investor_id`` in ``tenant``, of either form
    (:func:`names_case`): what a decision for that lead may name.

    >>> [is_case_of(g, "acme", "inv-1") for g in ("case:acme/inv-1:3", "case:inv-1:3",
    ...  "q:acme/inv-1:3", "case:acme/inv-1:x", "case:ACME/inv-1:1", "case:inv-2:1",
    ...  "case:acme/inv-1:03", "case:acme/inv-1:0")]
    [True, True, False, False, False, False, False, False]
    """
    try:
        n = case_number(given)
    except (ValueError, IndexError):  # no counter, or not a number
        return False
    return n > 0 and given in (case_id(tenant, investor_id, n), f"case:{investor_id}:{n}")


def case_owner(derived_id: str) -> tuple[str, str] | None:
    """``(tenant, investor_id)`` a case or qualification id names, or None for an id of
    the old form (no ``/``: an entity id holds none) or one no valid key spells."""
    body = derived_id.partition(":")[2].rpartition(":")[0]
    if "/" not in body:
        return None
    try:
        return parse_output_key(body)
    except ValueError:
        return None


def parse_output_key(key: str | bytes) -> tuple[str, str]:
    """``(tenant, investor_id)`` of a key made by :func:`output_key`.

    Raises ``ValueError`` for anything else: a bare investor id (the old contract), a
    tenant or investor part that no valid id spells (``../x/inv-1``, ``Acme/inv-1``,
    ``acme/``), bytes that are not UTF-8. A caller that acts on the key (deletes a lead)
    must never guess the tenant.
    """
    try:
        text = key.decode("utf-8") if isinstance(key, bytes) else key
    except UnicodeDecodeError:
        # Cut, as below: the text goes into dead letters and logs, and a key may be 5 MB.
        raise ValueError(f"key {key[:200]!r} is not UTF-8") from None
    match = _KEY.fullmatch(text)
    if match is None:
        raise ValueError(f"key {text[:200]!r} is not {KEY_FORMAT}")
    return match.group(1), match.group(2)
