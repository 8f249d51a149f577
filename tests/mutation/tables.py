"""Mutants of module-level tables, which mutmut 2 does not mutate usefully.

Two tables decide who may be contacted and what a lead may become: the lead
``TRANSITIONS`` and the contact rules of the compliance packs. Each mutant here is one
edit of one entry, applied to the source text (so it is exactly what a careless edit
would look like), and named so that ``equivalent.txt`` can list it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import NamedTuple


class TableMutant(NamedTuple):
    path: str  #: file to edit, relative to the repository root
    name: str  #: stable name, as listed in equivalent.txt
    edit: object  #: callable: original text -> mutated text


_ROW = re.compile(r"^    (\w+): frozenset\((?:\{(.*)\})?\),$", re.M)


def transitions_mutants(source: str, path: str = "operators/lead_state.py") -> list[TableMutant]:
    """Add or remove every ordered pair of states of ``TRANSITIONS``, one at a time.

    >>> src = "X = {\\n    R: frozenset({E}),\\n    E: frozenset(),\\n}\\n"
    >>> names = [m.name for m in transitions_mutants(src, "f.py")]
    >>> names
    ['TRANSITIONS +R->R', 'TRANSITIONS -R->E', 'TRANSITIONS +E->R', 'TRANSITIONS +E->E']
    >>> transitions_mutants(src, "f.py")[1].edit(src).splitlines()[1]
    '    R: frozenset(),'
    """
    rows = {m.group(1): [t.strip() for t in (m.group(2) or "").split(",") if t.strip()]
            for m in _ROW.finditer(source)}
    mutants = []
    for here, targets in rows.items():
        for there in rows:
            changed = [t for t in targets if t != there] if there in targets else targets + [there]
            line = _render(here, changed)
            old = _render(here, targets)
            sign = "-" if there in targets else "+"
            mutants.append(TableMutant(path, f"TRANSITIONS {sign}{here}->{there}",
                                       _replace_line(old, line)))
    return mutants


def _render(state: str, targets: list[str]) -> str:
    return f"    {state}: frozenset({{{', '.join(targets)}}})," if targets else f"    {state}: frozenset(),"


def _replace_line(old: str, new: str):
    def edit(text: str) -> str:
        lines = text.split("\n")
        return "\n".join(new if line == old else line for line in lines)
    return edit


REQUIRES = ("consent", "consent_or_soft_opt_in", "not_opted_out")


def pack_mutants(path: Path, root: Path) -> list[TableMutant]:
    """Per contact rule: each other consent basis, and ``do_not_call`` toggled."""
    rel = str(path.relative_to(root))
    rules = tomllib.loads(path.read_text()).get("rules", [])
    mutants = []
    for rule in rules:
        for basis in REQUIRES:
            if basis != rule["requires"]:
                mutants.append(TableMutant(
                    rel, f"{rule['id']} requires {rule['requires']}->{basis}",
                    _rule_edit(rule["id"], "requires", f'"{rule["requires"]}"', f'"{basis}"')))
        old, new = ("true", "false") if rule["do_not_call"] else ("false", "true")
        mutants.append(TableMutant(rel, f"{rule['id']} do_not_call {old}->{new}",
                                   _rule_edit(rule["id"], "do_not_call", old, new)))
    return mutants


def _rule_edit(rule_id: str, key: str, old: str, new: str):
    """Change ``key = old`` to ``key = new`` inside the ``[[rules]]`` block with ``rule_id``.

    >>> text = '[[rules]]\\nid = "a"\\nx = 1\\n\\n[[rules]]\\nid = "b"\\nx = 1\\n'
    >>> _rule_edit("b", "x", "1", "2")(text)
    '[[rules]]\\nid = "a"\\nx = 1\\n\\n[[rules]]\\nid = "b"\\nx = 2\\n'
    """
    def edit(text: str) -> str:
        blocks = text.split("[[rules]]")
        for i, block in enumerate(blocks):
            if re.search(rf'^id = "{re.escape(rule_id)}"$', block, re.M):
                changed, n = re.subn(rf"^{key} = {re.escape(old)}$", f"{key} = {new}", block,
                                     count=1, flags=re.M)
                if n != 1:
                    raise ValueError(f"{rule_id}: no line {key} = {old}")
                blocks[i] = changed
                return "[[rules]]".join(blocks)
        raise ValueError(f"no rule {rule_id}")
    return edit


def mutants_for(module: str, root: Path) -> list[TableMutant]:
    """The table mutants that belong to ``module`` (a key of ``run.MODULES``)."""
    if module == "lead_state":
        path = "operators/lead_state.py"
        return transitions_mutants((root / path).read_text(), path)
    if module == "compliance":
        packs = sorted((root / "operators" / "compliance_packs").glob("*.toml"))
        return [m for p in packs if p.name != "claims.toml" for m in pack_mutants(p, root)]
    return []
