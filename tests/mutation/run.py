"""Mutation testing of the modules that decide (``make mutation``; not part of ``make test``).

For each module: mutmut 2 mutates its code, ``tables.py`` mutates its tables, and the
module's own tests (a few files, so that one mutant takes seconds) run against every
mutant in a scratch copy of the work tree (the tree itself is never edited). Survivors
listed in ``equivalent.txt`` (changes no input can observe) leave the score's
denominator; every other survivor is printed. Exit status 1 if a module is below
``--min-score``.

    python tests/mutation/run.py [--min-score 90] [MODULE ...]
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.mutation.tables import mutants_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EQUIVALENT = Path(__file__).with_name("equivalent.txt")

#: module -> (source file, tests that pin it). The module's doctests run too.
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "lead_state": ("operators/lead_state.py", ("tests/operators/test_lead_state.py",)),
    "compliance": ("operators/compliance.py", ("tests/operators/test_compliance_matrix.py",
                                               "tests/operators/test_compliance.py",
                                               "tests/operators/test_contact_rules.py")),
    "esg_reference": ("operators/esg_reference.py", ("tests/operators/test_esg_reference.py",)),
    "drift": ("online_models/drift.py", ("tests/online_models/test_drift_both_ways.py",
                                         "tests/online_models/test_drift.py")),
    # Value tests first: with -x, most mutants die in the first test file.
    "features": ("operators/features.py", ("tests/operators/test_features_values.py",
                                           "tests/operators/test_features.py")),
    "scoring": ("operators/scoring.py", ("tests/operators/test_scoring_blend_values.py",
                                         "tests/operators/test_scoring_values.py",
                                         "tests/operators/test_scoring_drift_alerts.py",
                                         "tests/operators/test_scoring_degradation.py",
                                         "tests/operators/test_scoring_horizon.py",
                                         "tests/operators/test_scoring_restore.py",
                                         "tests/operators/test_scoring_models.py",
                                         "tests/operators/test_scoring.py")),
}


@dataclass
class Outcome:
    module: str
    mutants: int = 0
    killed: int = 0
    equivalent: list[str] = field(default_factory=list)
    survivors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def score(self) -> float:
        counted = self.mutants - len(self.equivalent)
        return 100.0 * self.killed / counted if counted else 100.0


def load_equivalent(path: Path = EQUIVALENT) -> dict[str, str]:
    """Mutant key -> reason. Lines: ``<file>: `<before>` -> `<after>` -- <reason>``;
    table mutants: ``<file>: <name> -- <reason>``; ``#`` starts a comment line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "e.txt"
    >>> _ = p.write_text("# c\\na.py: `x = 1` -> `x = 2` -- unused\\nb.toml: R1 do_not_call -- moot\\n")
    >>> load_equivalent(p)
    {'a.py: `x = 1` -> `x = 2`': 'unused', 'b.toml: R1 do_not_call': 'moot'}
    """
    entries = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, sep, reason = line.rpartition(" -- ")
        if not sep or not reason.strip():
            raise ValueError(f"{path.name}: no ' -- reason' in {line!r}")
        entries[key.strip()] = reason.strip()
    return entries


def scratch_copy(rev: str | None = None) -> Path:
    """The tracked and untracked (not ignored) files of the work tree, in a temp dir;
    with ``rev``, that commit's files instead (to measure the tests as they were)."""
    dest = Path(tempfile.mkdtemp(prefix="esg-mutation-"))
    if rev is not None:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return dest
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def tests_of(work: Path, module: str) -> tuple[str, ...]:
    """The module's test files that exist in ``work`` (an older revision may lack some)."""
    return tuple(t for t in MODULES[module][1] if (work / t).is_file())


def doctest_node(source: str) -> tuple[str, ...]:
    """The test that runs the module's docstring examples (``tests/test_doctests.py``)."""
    if ">>>" not in (ROOT / source).read_text():
        return ()
    dotted = "esg_leads." + source.removesuffix(".py").replace("/", ".")
    return (f"tests/test_doctests.py::test_docstring_examples_hold[{dotted}]",)


#: mutmut 2 counts a mutant killed only when the tests exit with status 1; a mutant that
#: breaks the module's import makes pytest exit 2 (collection error) or 4 (a test id that
#: cannot be collected), which mutmut would count as survived. Any failure is 1 here.
_PYTEST_FAILS_AS_1 = "import sys, pytest; sys.exit(1 if pytest.main(sys.argv[1:]) else 0)"


def pytest_command(source: str, tests: tuple[str, ...]) -> list[str]:
    return [sys.executable, "-c", _PYTEST_FAILS_AS_1, "-x", "-q", "-p", "no:cacheprovider",
            "--hypothesis-seed=0", *tests, *doctest_node(source)]


def run_mutmut(work: Path, module: str, out: Outcome, equivalent: dict[str, str], log) -> None:
    source, tests = MODULES[module][0], tests_of(work, module)
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    (work / ".mutmut-cache").unlink(missing_ok=True)
    runner = shlex.join(pytest_command(source, tests))
    subprocess.run([mutmut, "run", "--paths-to-mutate", source, "--tests-dir", str(Path(tests[0]).parent),
                    "--runner", runner, "--no-progress", "--simple-output",
                    "-m", "4", "-b", "20"],
                   cwd=work, stdout=log, stderr=subprocess.STDOUT, env=_env(work))

    def ids(kind: str) -> list[str]:
        text = subprocess.run([mutmut, "result-ids", kind], cwd=work, capture_output=True,
                              text=True, env=_env(work)).stdout
        return text.split()

    killed = ids("killed") + ids("timeout")
    surviving = ids("survived") + ids("suspicious")
    out.mutants += len(killed) + len(surviving) + len(ids("untested"))
    out.killed += len(killed)
    for mutant_id in surviving:
        key = f"{source}: {_diff(work, mutmut, mutant_id)}"
        (out.equivalent if key in equivalent else out.survivors).append(key)


def _diff(work: Path, mutmut: str, mutant_id: str) -> str:
    """```before` -> `after``` from ``mutmut show``, stable across line numbers."""
    text = subprocess.run([mutmut, "show", mutant_id], cwd=work, capture_output=True, text=True,
                          env=_env(work)).stdout
    before = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("-") and not ln.startswith("---")]
    after = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("+") and not ln.startswith("+++")]
    return f"`{' / '.join(before)}` -> `{' / '.join(after)}`"


def run_tables(work: Path, module: str, out: Outcome, equivalent: dict[str, str], log) -> None:
    source, tests = MODULES[module][0], tests_of(work, module)
    command = pytest_command(source, tests)
    for mutant in mutants_for(module, work):
        path = work / mutant.path
        original = path.read_text()
        mutated = mutant.edit(original)
        if mutated == original:
            raise RuntimeError(f"table mutant {mutant.name} changed nothing")
        path.write_text(mutated)
        try:
            result = subprocess.run(command, cwd=work, stdout=log, stderr=subprocess.STDOUT,
                                    env=_env(work), timeout=600)
        finally:
            path.write_text(original)
        out.mutants += 1
        key = f"{mutant.path}: {mutant.name}"
        if result.returncode != 0:
            out.killed += 1
        else:
            (out.equivalent if key in equivalent else out.survivors).append(key)


def _env(work: Path) -> dict[str, str]:
    import os
    return {**os.environ, "PYTHONPATH": str(work), "PYTHONHASHSEED": "0"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE",
                        help=f"any of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--min-score", type=float, default=90.0)
    parser.add_argument("--rev", help="measure the tests of this commit instead of the work tree")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy and its logs")
    args = parser.parse_args(argv)
    unknown = set(args.modules) - set(MODULES)
    if unknown:
        parser.error(f"unknown module(s) {', '.join(sorted(unknown))}; known: {', '.join(MODULES)}")
    equivalent = load_equivalent()
    outcomes = []
    for module in args.modules or list(MODULES):
        work = scratch_copy(args.rev)
        started = time.monotonic()
        out = Outcome(module)
        with open(work / "mutation.log", "w") as log:
            print(f"{module}: mutating {MODULES[module][0]} in {work} ...", flush=True)
            run_mutmut(work, module, out, equivalent, log)
            run_tables(work, module, out, equivalent, log)
        out.seconds = time.monotonic() - started
        outcomes.append(out)
        for key in out.survivors:
            print(f"  survived: {key}")
        print(f"  {module}: {out.killed}/{out.mutants - len(out.equivalent)} killed "
              f"({len(out.equivalent)} equivalent), {out.score:.1f} %, {out.seconds:.0f} s", flush=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print("| module | mutants | equivalent | killed | score |")
    print("|---|---|---|---|---|")
    for o in outcomes:
        print(f"| `{MODULES[o.module][0]}` | {o.mutants} | {len(o.equivalent)} | {o.killed} | {o.score:.0f} % |")
    return 0 if all(o.score >= args.min_score for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
