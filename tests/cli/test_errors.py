"""A user never sees a traceback (issue 20, part 5): every everyday mistake is one line
on stderr and a non-zero exit, for every sub-command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from esg_leads.cli.main import build_parser, main
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from tests.kafka_helpers import ESG_LEADS, refused_address


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A real recording, an empty directory, a file, a directory of junk Parquet, a
    broken config: what a clumsy operator points commands at."""
    root = tmp_path_factory.mktemp("places")
    world = root / "world"
    generate(WorldSpec(tenants=2, investors=40, properties=5, days=2, seed=3, profile_answers=False), world)
    (root / "empty").mkdir()
    (root / "file.txt").write_text("hello\n")
    junk = root / "junk"
    junk.mkdir()
    (junk / "segment-000000.parquet").write_bytes(b"this is not parquet")
    (root / "bad.toml").write_text("[windows\n")
    (root / "invalid.toml").write_text("[windows]\nshards_per_tenant = 0\n")
    return {"world": world, "empty": root / "empty", "file": root / "file.txt", "junk": junk,
            "missing": root / "missing", "bad_toml": root / "bad.toml",
            "invalid_toml": root / "invalid.toml", "root": root}


#: (argv with {placeholders}, expected exit code, a phrase of the one error line).
CASES = [
    ("schema leads.nope", 2, "unknown topic"),
    ("generate --investors abc --out {root}/g1", 2, "--investors: not a whole number"),
    ("generate --investors -5 --out {root}/g1", 2, "must be at least 1"),
    ("generate --malformed-rate 2 --out {root}/g1", 2, "between 0 and 1"),
    ("generate --days 5 --drift-at 9 --out {root}/g1", 2, "drift day"),
    ("generate --investors 40 --days 1 --out {world}", 2, "add --overwrite"),
    ("generate --out {file}", 2, "is a file"),
    ("replay {empty} --out {root}/r1", 2, "is not a recording"),
    ("replay {missing} --out {root}/r1", 2, "no recording at"),
    ("replay {file} --out {root}/r1", 2, "is a file"),
    ("replay {junk} --out {root}/r1", 2, "is not a readable recording"),
    ("replay {world} --out {root}/r1 --config {missing}", 2, "config file not found"),
    ("replay {world} --out {root}/r1 --config {bad_toml}", 2, "not valid TOML"),
    ("replay {world} --out {root}/r1 --config {invalid_toml}", 2, "windows.shards_per_tenant"),
    ("replay {world} --out {root}/r1 --workers 0", 2, "must be at least 1"),
    ("replay {world} --out {root}/r1 --metrics-port 99999", 2, "not a TCP port"),
    ("replay {world} --out {file}/r1", 2, "cannot write"),
    ("run --workers 0", 2, "must be at least 1"),
    ("run --config {missing}", 2, "config file not found"),
    ("run --bootstrap u:pw@host:9092", 2, "must not hold credentials"),
    ("config --config {invalid_toml}", 2, "windows.shards_per_tenant"),
    ("config --metrics-port -1", 2, "not a TCP port"),
    ("broker --port 70000", 2, "not a TCP port"),
    ("broker --brokers 0", 2, "must be at least 1"),
    ("broker --port {busy}", 2, "Address already in use: is another process listening"),
    ("replay {world} --out {root}/r2 --metrics-port {busy}", 2, "Address already in use"),
    ("produce {empty} --bootstrap 127.0.0.1:9", 2, "is not a recording"),
    ("produce {world} --bootstrap 127.0.0.1:9 --speed 0", 2, "positive number"),
    ("produce {world} --bootstrap {nowhere}", 1, "cannot publish to 127.0.0.1"),
    ("record --out {root}/rec", 2, "--until-end or --duration"),
    ("record --until-end --out {world}", 2, "add --overwrite"),
    ("record --duration nan --out {root}/rec", 2, "positive number"),
    ("record --until-end --out {root}/rec --bootstrap {nowhere} --connect-timeout 1", 1,
     "did not answer within 1s"),
    ("diff {empty} {world}", 2, "holds no run outputs"),
    ("diff {missing} {empty}", 2, "no run outputs at"),
    ("explain inv-1 --out {missing}", 2, "no run outputs at"),
    ("explain inv-1 --out {empty}", 2, "holds no run outputs"),
    ("explain Acme/inv-1 --out {world}", 2, "is neither <tenant>/<investor_id> nor an investor id"),
    ("explain acme/../inv-1 --out {world}", 2, "is neither <tenant>/<investor_id>"),
    ("explain inv-1 --tenant ../acme --out {world}", 2, "is not a tenant id"),
    ("explain acme/inv-1 --tenant beta --out {world}", 2, "is not of --tenant beta"),
    ("review-decision case:inv-1:1 --approve", 2, "required"),
    ("review-decision case:inv-1:1 --approve --reject --reviewer a --tenant t --investor i", 2,
     "not allowed with"),
    ("review-decision case:inv-1:1 --approve --reviewer a --tenant t --investor i "
     "--config {missing}", 2, "config file not found"),
    ("demo --investors 0", 2, "must be at least 1"),
    ("crm-sync --config {missing}", 2, "config file not found"),
    ("crm-sync --metrics-port x", 2, "not a whole number"),
    ("webhooks --port 70000", 2, "not a TCP port"),
    ("fake-crm --chaos bogus --port 0", 2, "chaos"),
    ("fake-crm --port {busy}", 2, "Address already in use"),
    ("webhooks --port {busy}", 2, "Address already in use"),
    ("train {empty} --out {root}/reg", 2, "is not a recording"),
    ("train {world} --out {root}/reg --until yesterday", 2, "is not an ISO 8601 time"),
    ("models list --registry {missing}", 2, "no model registry at"),
    ("models show m-abcd --registry {empty}", 2, "no model version m-abcd"),
    ("models diff m-abcd m-ef01 --registry {empty}", 2, "no model version m-abcd"),
    ("report {empty}", 2, "is not a run's output directory"),
    ("tombstone-old-keys --config {missing}", 2, "config file not found"),
    ("tombstone-old-keys --bootstrap {nowhere} --connect-timeout 1", 1,
     "did not answer within 1s"),
    ("report {file}", 2, "is not a run's output directory"),
]


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's way out
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line(code: int, err: str, expected_code: int, phrase: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    assert code == expected_code, err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    # One error line, the last: an informative line before it ("using config.toml") is fine.
    assert len(errors) == 1 and errors[0] == lines[-1] and ": error: " in errors[0], err
    assert phrase in errors[0], err


@pytest.fixture(scope="module")
def busy() -> int:
    """A port some process listens on."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        yield listening.getsockname()[1]


@pytest.mark.parametrize(("argv", "code", "phrase"), CASES, ids=[c[0][:60] for c in CASES])
def test_every_mistake_is_one_line_and_a_non_zero_exit(
        places: dict[str, Path], busy: int, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, argv: str, code: int, phrase: str) -> None:
    from esg_leads.connectors import publish

    # The retry budget of an unreachable broker, shortened so the test takes 1 s, not 10.
    monkeypatch.setattr(publish, "_METADATA_TIMEOUT_S", 1.0)
    monkeypatch.setattr(publish, "_METADATA_SETTLE_S", 0.0)
    monkeypatch.setenv("ESG_LEADS_CONTACT_HASH_SALT", "test-salt-not-the-default")
    with refused_address() as nowhere:
        words = argv.format(**places, nowhere=nowhere, busy=busy).split()
        assert_one_line(*run_main(words, capsys), code, phrase)


def subcommands() -> list[str]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
    return sorted(sub.choices)


@pytest.mark.parametrize("command", subcommands())
def test_every_subcommand_refuses_an_unknown_flag_in_one_line(
        command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Unknown flag, or the required arguments it left out: either way one line that says
    # where to look.
    assert_one_line(*run_main([command, "--no-such-flag"], capsys), 2,
                    f"(see esg-leads {command} --help)")


def test_every_subcommand_has_a_case_of_its_own() -> None:
    """A new sub-command comes with its everyday mistakes in :data:`CASES`."""
    covered = {argv.split()[0] for argv, _, _ in CASES}
    assert set(subcommands()) - covered == set()


def test_no_command_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line(*run_main([], capsys), 2, "required: COMMAND")


def test_an_unexpected_exception_is_one_line_and_exit_70(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from esg_leads.cli import main as cli

    def broken(args: object) -> int:
        raise KeyError("a bug")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["schema"].set_defaults(func=broken)
    code, err = run_main(["schema"], capsys)
    assert code == 70 and "Traceback" not in err
    assert err.strip() == ("esg-leads schema: error: internal error (a bug, please report it "
                           "with the output of --traceback): KeyError: 'a bug'")
    with pytest.raises(KeyError):  # --traceback: the traceback, for the bug report
        main(["schema", "--traceback"])


# ------------------------------------------------------- the real process, end to end


def test_a_closed_stdout_ends_silently() -> None:
    """``esg-leads schema | head -1``: the reader is gone before the command writes."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([ESG_LEADS, "schema"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=60)
    finally:
        os.close(write)
    assert done.stderr == ""
    assert done.returncode == 141  # 128 + SIGPIPE, as a process the signal killed


def test_version_comes_from_the_package_metadata() -> None:
    from importlib.metadata import version

    done = subprocess.run([ESG_LEADS, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"esg-leads {version('esg-leads')}"


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for argv, phrase in ((["replay", str(tmp_path / "empty"), "--out", str(tmp_path / "o")],
                          "is not a recording"),
                         (["generate", "--days", "zero", "--out", str(tmp_path / "w")],
                          "not a whole number")):
        done = subprocess.run([ESG_LEADS, *argv], capture_output=True, text=True, timeout=60)
        assert_one_line(done.returncode, done.stderr, 2, phrase)


def test_cli_module_runs_as_a_script() -> None:
    done = subprocess.run([sys.executable, "-m", "esg_leads", "schema", "nope"],
                          capture_output=True, text=True, timeout=60)
    assert_one_line(done.returncode, done.stderr, 2, "unknown topic")
