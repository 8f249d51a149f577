"""Keyed state per investor at the end of a replay, per attribute (issue 16's memory).

    python bench/state_size.py WORLD [--min-bytes 8] [--json]

At 100k investors the sinks' buffers are constant: what grows with investors is the
state keyed steps hold. This replays ``WORLD`` in this process without bytewax's
runtime (``flows/plain.py``: the very steps, the same decisions), keeps every keyed
step's operator objects, and at the end of the input prints their deep size (bytes per
investor, and Python objects per investor) per attribute.

A dict attribute (investors or leads by id, in practice) is broken down further: its
keys, and for values that are objects each slot or attribute (``investors.lineage``),
else the values as a whole (``investors.<val>``).
Objects reached twice are counted once, where the walk first meets them (steps in
flow order, attributes in slot order): a shared names tuple or a shared property
signal costs nothing a second time, as in memory. Classes, modules and functions are
not walked. What does not grow with investors (models, settings) is in the figures
too, divided by the investor count like the rest: it is small at the worlds this is
meant for, and the ``per key`` column tells it apart.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

_LEAVES = (str, bytes, int, float, bool, type(None), complex)
_SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType,
         types.MethodType, types.CodeType)


class _Walk:
    """Deep sizes, each object counted once over the whole walk."""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    def size(self, root: Any) -> tuple[int, int]:
        total = count = 0
        stack = [root]
        seen = self.seen
        while stack:
            obj = stack.pop()
            if id(obj) in seen or isinstance(obj, _SKIP):
                continue
            seen.add(id(obj))
            total += sys.getsizeof(obj)
            count += 1
            if not isinstance(obj, _LEAVES):
                stack.extend(gc.get_referents(obj))
        return total, count

    def shell(self, obj: Any) -> int:
        """The object alone (its attributes are measured one by one)."""
        if id(obj) in self.seen:
            return 0
        self.seen.add(id(obj))
        return sys.getsizeof(obj) + (sys.getsizeof(obj.__dict__)
                                     if hasattr(obj, "__dict__") else 0)


def attributes(obj: Any) -> list[tuple[str, Any]]:
    """An object's attributes: its ``__dict__`` and every slot that is set."""
    found = list(getattr(obj, "__dict__", {}).items())
    for cls in type(obj).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                found.append((name, getattr(obj, name)))
    return found


def _is_object(value: Any) -> bool:
    return not isinstance(value, _LEAVES + (dict, list, tuple, set, frozenset)) and bool(
        attributes(value))


def measure(keyed: list[tuple[str, list[Any]]]) -> dict[str, list[int]]:
    """``{"step attribute": [bytes, objects]}`` over the operators of every keyed step."""
    walk = _Walk()
    parts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])

    def add(name: str, sized: tuple[int, int]) -> None:
        parts[name][0] += sized[0]
        parts[name][1] += sized[1]

    for step, operators in keyed:
        for operator in operators:
            add(f"{step} <operator>", (walk.shell(operator), 1))
            for attr, value in attributes(operator):
                name = f"{step} {attr}"
                if not isinstance(value, dict):
                    add(name, walk.size(value))
                    continue
                add(name + "{}", (walk.shell(value), 1))
                for key, item in value.items():
                    add(name + ".<key>", walk.size(key))
                    if _is_object(item):
                        add(name + ".<obj>", (walk.shell(item), 1))
                        for slot, slot_value in attributes(item):
                            add(f"{name}.{slot}", walk.size(slot_value))
                    else:
                        add(name + ".<val>", walk.size(item))
    return dict(parts)


def replay_keyed(world: Path, out: Path) -> list[tuple[str, list[Any]]]:
    """Replay ``world`` into ``out`` with the plain loop; every keyed step's operators."""
    from esg_leads.flows import plain
    from esg_leads.flows.config import load_settings
    from esg_leads.replay import runner

    steps: list[Any] = []

    class Kept(plain._Keyed):  # noqa: SLF001 - the plain loop's own bookkeeping
        def __init__(self, step: Any) -> None:
            super().__init__(step)
            steps.append(self)

    plain._Keyed = Kept  # type: ignore[misc]  # noqa: SLF001
    runner.run_main = plain.execute
    config = world / "config.toml"
    runner.replay(world, out, load_settings(config if config.exists() else None, environ={}))
    gc.collect()
    keyed = []
    for kept in steps:
        operators = [getattr(logic, "operator", logic) for logic in kept.logics.values()]
        keyed.append((kept.step.step_id.split(".")[-1], [o for o in operators if o is not None]))
    return keyed


def investors(keyed: list[tuple[str, list[Any]]]) -> int:
    """Investors held: the entries of the investor stage's ``investors`` dicts."""
    return sum(len(getattr(o, "investors", ())) for _, operators in keyed for o in operators)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("world", type=Path, help="a recording (esg-leads generate)")
    parser.add_argument("--min-bytes", type=float, default=8.0,
                        help="hide attributes under this many bytes per investor")
    parser.add_argument("--json", action="store_true", help="the whole table as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        keyed = replay_keyed(args.world, Path(tmp) / "out")
        n = investors(keyed)
        parts = measure(keyed)
    if not n:
        raise SystemExit("no investor state held at the end of the replay")
    if args.json:
        print(json.dumps({"investors": n, "bytes_per_investor": {
            k: round(v[0] / n, 1) for k, v in sorted(parts.items())}}))
        return 0
    steps: dict[str, float] = collections.defaultdict(float)
    for name, (size, _) in parts.items():
        steps[name.split(" ")[0]] += size / n
    print(f"{n} investors; keyed state {sum(v[0] for v in parts.values()) / n / 1024:.2f} KB "
          f"per investor")
    print(f"{'step':<12} {'attribute':<34} {'B/investor':>10} {'objs/inv':>9}")
    for name, (size, count) in sorted(parts.items(), key=lambda kv: (
            -steps[kv[0].split(' ')[0]], -kv[1][0])):
        if size / n >= args.min_bytes:
            step, attr = name.split(" ", 1)
            print(f"{step:<12} {attr:<34} {size / n:>10.0f} {count / n:>9.1f}")
    print("per step: " + ", ".join(f"{s} {b:.0f}" for s, b in
                                   sorted(steps.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
