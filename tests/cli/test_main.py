"""The ``esg-leads`` command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from esg_leads.cli.main import main
from esg_leads.flows.config import load_settings
from esg_leads.flows.run import startup_warnings
from esg_leads.schemas.settings import Settings
from esg_leads.schemas.topics import ALL_TOPICS


def test_schema_prints_every_topic(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert set(schemas) == set(ALL_TOPICS)
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_schema_of_one_topic_and_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "leads.scored"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "urn:esg-leads:topic:leads.scored"
    assert main(["schema", "leads.nope"]) == 2
    assert "unknown topic 'leads.nope'" in capsys.readouterr().err


def test_generate_then_replay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    assert main(["generate", "--investors", "200", "--days", "5", "--seed", "3",
                 "--out", str(world)]) == 0
    assert "messages" in capsys.readouterr().err
    assert main(["replay", str(world), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "reconciled: yes" in err and "config.toml" in err
    assert {p.name for p in run.iterdir()} >= {"leads.parquet", "dlq.parquet", "alerts.parquet",
                                               "summary.json"}


def test_invalid_config_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "world"
    main(["generate", "--investors", "50", "--days", "2", "--out", str(world)])
    bad = tmp_path / "bad.toml"
    bad.write_text("[windows]\nshards_per_tenant = 0\n")
    assert main(["replay", str(world), "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "windows.shards_per_tenant" in err and "Traceback" not in err
    bad.write_text("[windows\n")
    assert main(["replay", str(world), "--out", str(tmp_path / "run"), "--config", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_bad_generate_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--days", "5", "--drift-at", "9", "--out", str(tmp_path)]) == 2
    assert "drift day" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    exe = shutil.which("esg-leads", path=str(Path(sys.executable).parent))
    assert exe is not None
    done = subprocess.run([exe, "schema", "crm.outcomes"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert json.loads(done.stdout)["x-kafka-key"] == "investor_id"


def test_run_warns_only_while_the_contact_salt_is_the_dev_default() -> None:
    assert any("contact_hash_salt" in w for w in startup_warnings(Settings()))
    signed = {tenant: {"erasure_signing_key": "e" * 32} for tenant in Settings().tenants}
    assert startup_warnings(Settings.model_validate({"contact_hash_salt": "s3cret",
                                                     "recovery": {"directory": "r"},
                                                     "tenants": signed})) == []
    # Tenants whose erasure requests anyone who can write the topic could forge.
    [unsigned] = [w for w in startup_warnings(Settings.model_validate({
        "contact_hash_salt": "s3cret", "recovery": {"directory": "r"},
        "tenants": {**signed, "acme-capital": {}}})) if "erasure" in w]
    assert "acme-capital" in unsigned and "borealis-re" not in unsigned
    # Without a key store on disk, sealed dead letters could not be opened after a stop.
    assert any("dlq.key_store" in w for w in startup_warnings(
        Settings.model_validate({"contact_hash_salt": "s3cret"})))


def test_replay_serves_metrics_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world, run = tmp_path / "world", tmp_path / "run"
    main(["generate", "--investors", "100", "--days", "3", "--seed", "5", "--out", str(world)])
    assert main(["replay", str(world), "--out", str(run), "--metrics-port", "0"]) == 0
    err = capsys.readouterr().err
    url = next(word for word in err.split() if word.endswith("/metrics"))
    body = urllib.request.urlopen(url, timeout=5).read().decode()  # the server outlives the run
    summary = json.loads((run / "summary.json").read_text())
    read = sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines()
               if line.startswith("esg_leads_input_messages_total{"))
    assert read == summary["messages"] > 0


# --------------------------------------------------------------- review-decision

REVIEW_KEY = "1234567890" * 4  # digits only: read as JSON it would become a number


def review_config(tmp_path: Path, extra: str = "") -> Path:
    config = tmp_path / "review.toml"
    config.write_text(f'[tenants.acme]\nreviewers = ["rev-7"]\nreview_signing_key = "{REVIEW_KEY}"\n'
                      '[tenants.beta]\nreviewers = ["rev-7"]\n' + extra)
    return config


def decide(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["review-decision", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lifecycle_with_open_case():
    from esg_leads.operators.lifecycle import LifecycleShard
    from tests.operators.test_lifecycle import NOW, of, scored

    settings = load_settings(environ={}, config_file=None, overrides={"tenants": {"acme": {
        "reviewers": ["rev-7"], "review_signing_key": REVIEW_KEY}},
        "lifecycle": {"uncertain_review_after": 0}})  # the ambiguous score is reviewed at once
    shard = LifecycleShard(settings)
    [case] = of(shard.process([scored(0.52)], NOW), "review")
    return shard, case["case_id"], NOW, of


def as_ingested(value: bytes):
    from esg_leads.schemas.codec import decode_event
    from esg_leads.schemas.records import Ingested

    return Ingested(decode_event("lead.review-decisions", value), "lead.review-decisions", 0, 1,
                    0, b"inv-1", value)


@pytest.mark.parametrize(("flags", "state"), [(["--approve"], "handed_off"),
                                              (["--reject"], "disqualified"),
                                              (["--verdict", "needs_info"], "planned")])
def test_review_decision_prints_a_signed_decision_the_lifecycle_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], state: str) -> None:
    shard, case_id, now, of = lifecycle_with_open_case()
    code, out, err = decide(capsys, case_id, *flags, "--reviewer", "rev-7", "--tenant", "acme",
                            "--investor", "inv-1", "--note", "EPC checked",
                            "--config", str(review_config(tmp_path)))
    assert code == 0, err
    decision = json.loads(out)
    assert decision["signature"].startswith("sha256=") and decision["note"] == "EPC checked"
    assert REVIEW_KEY not in out + err
    emitted = shard.process([as_ingested(out.strip().encode())], now)
    assert not of(emitted, "dlq")
    assert of(emitted, "leads")[0]["state"] == state
    assert bool(of(emitted, "handoff")) == (state == "handed_off")


def test_review_decision_key_from_the_environment_stays_a_string(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEW_SIGNING_KEY": REVIEW_KEY,
           "ESG_LEADS_TENANTS__ACME-CAPITAL__REVIEWERS": '["alice"]'}
    tenant = load_settings(environ=env).tenants["acme-capital"]
    assert tenant.review_signing_key.get_secret_value() == REVIEW_KEY and tenant.reviewers == ("alice",)
    # The file names the tenant and its reviewers; the key comes from the environment.
    config = tmp_path / "acme.toml"
    config.write_text('[tenants.acme-capital]\nreviewers = ["alice"]\n')
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = decide(capsys, "case:inv-1:1", "--approve", "--reviewer", "alice",
                            "--tenant", "acme-capital", "--investor", "inv-1",
                            "--event-time", "2026-03-02T11:00:00+01:00", "--config", str(config))
    assert code == 0, err
    from esg_leads.operators import review_auth

    event = as_ingested(out.strip().encode()).event
    assert event.event_time.isoformat() == "2026-03-02T10:00:00+00:00"
    assert review_auth.verify(REVIEW_KEY, event.signature, **review_auth.decision_fields(event))
    # The key is a secret: `esg-leads config` shows that it is set, never what it is.
    assert main(["config", "--config", str(config)]) == 0
    shown = capsys.readouterr().out
    assert REVIEW_KEY not in shown
    assert json.loads(shown)["tenants"]["acme-capital"]["review_signing_key"] == "***"


@pytest.mark.parametrize(("args", "message"), [
    (["--tenant", "ghost"], "unknown tenant 'ghost' (configured: acme, beta)"),
    (["--tenant", "beta"], "tenant 'beta' has no review_signing_key"),
    (["--reviewer", "mallory"], "reviewer 'mallory' is not on the reviewers list"),
    (["--event-time", "2026-03-02T10:00:00"], "needs a timezone"),
    (["--investor", "inv 1"], "invalid decision: investor_id"),
])
def test_review_decision_mistakes_are_one_line_and_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    base = {"--tenant": "acme", "--reviewer": "rev-7", "--investor": "inv-1"}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = ["case:inv-1:1", "--approve", "--config", str(review_config(tmp_path)),
            *[x for pair in base.items() for x in pair]]
    code, out, err = decide(capsys, *argv)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert REVIEW_KEY not in err


@pytest.mark.parametrize("case", ["case:acme/inv-2:1", "case:beta/inv-1:1", "case:inv-2:1",
                                  "q:acme/inv-1:1", "case:acme/inv-1:abc", "case:ACME/inv-1:1",
                                  "case:acme/inv-1:0", "case:acme/inv-1: 1", "case"])
def test_review_decision_refuses_a_case_of_another_tenant_or_investor(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    """A case id names its tenant and investor (case:<tenant>/<investor>:<n>): a decision
    for it under other --tenant or --investor would only be dead-lettered by the flow."""
    code, out, err = decide(capsys, case, "--approve", "--reviewer", "rev-7", "--tenant", "acme",
                            "--investor", "inv-1", "--config", str(review_config(tmp_path)))
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "the flow would not find it" in err or "invalid decision: case_id" in err
    code, out, err = decide(capsys, "case:acme/inv-1:1", "--approve", "--reviewer", "rev-7",
                            "--tenant", "acme", "--investor", "inv-1",
                            "--config", str(review_config(tmp_path)))
    assert code == 0, err
    code, out, err = decide(capsys, "case:inv-1:1", "--approve", "--reviewer", "rev-7",
                            "--tenant", "acme", "--investor", "inv-1",
                            "--config", str(review_config(tmp_path)))
    assert code == 0, err  # the form of before stop 31: it still names acme's case 1 of inv-1


def test_review_decision_refuses_a_short_key_without_printing_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "short.toml"
    config.write_text('[tenants.acme]\nreviewers = ["rev-7"]\nreview_signing_key = "s3cr3t-12345"\n')
    code, out, err = decide(capsys, "case:inv-1:1", "--approve", "--reviewer", "rev-7",
                            "--tenant", "acme", "--investor", "inv-1", "--config", str(config))
    assert code == 2 and "at least 32 characters" in err and "s3cr3t" not in err


def test_review_decision_publishes_to_the_physical_topic_with_delivery_confirmed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from esg_leads.connectors.dev_broker import DevBroker
    from tests.kafka_helpers import consume_all

    config = review_config(tmp_path, '[kafka.topics]\n"lead.review-decisions" = "prod.decisions"\n')
    with DevBroker(topics=["prod.decisions"], partitions=3) as broker:
        code, out, err = decide(capsys, "case:inv-7:2", "--reject", "--reviewer", "rev-7",
                                "--tenant", "acme", "--investor", "inv-7", "--config", str(config),
                                "--bootstrap", broker.bootstrap)
        assert code == 0, err
        assert "published reject of case:inv-7:2 by rev-7" in err and "prod.decisions[" in err
        [message] = consume_all(broker.bootstrap, "prod.decisions")
    assert message.key() == b"inv-7" and message.value() == out.strip().encode()
    assert json.loads(message.value())["verdict"] == "reject"


def test_review_decision_unreachable_broker_fails_with_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from esg_leads.flows import review_decision
    from tests.kafka_helpers import refused_address

    monkeypatch.setattr(review_decision, "DELIVERY_TIMEOUT_S", 1.0)
    with refused_address() as nowhere:
        code, out, err = decide(capsys, "case:inv-1:1", "--approve", "--reviewer", "rev-7",
                                "--tenant", "acme", "--investor", "inv-1",
                                "--config", str(review_config(tmp_path)),
                                "--bootstrap", nowhere)
    assert code == 1 and "error:" in err and "published" not in err


# ------------------------------------------------------- faults (issue 14, "Faults")

#: ``esg-leads replay`` that signals itself once the first batch has been read: the
#: signal is real (the handler ``replay`` installs takes it) and lands mid-run, every
#: time, however fast or loaded the machine is.
SIGNAL_AFTER_FIRST_BATCH = """
import os, signal, sys, threading
from esg_leads.flows import progress
from esg_leads.cli.main import main

update = progress.Progress.update
said = threading.Event()


class Stderr:  # the replay says "stopping" once its stop is set (on a relay thread)
    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        if ": stopping" in text:
            said.set()
        return self.stream.write(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


sys.stderr = Stderr(sys.stderr)

def update_then_signal(self, done, total=None):
    if not getattr(update_then_signal, "sent", False):
        update_then_signal.sent = True
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        said.wait(30)  # the next batch is not read before the stop is set
    return update(self, done, total)

progress.Progress.update = update_then_signal
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    world = tmp_path_factory.mktemp("world")
    assert main(["generate", "--investors", "300", "--days", "6", "--seed", "8",
                 "--out", str(world)]) == 0
    config = world / "batches.toml"  # many batches: the signal lands between two
    config.write_text((world / "config.toml").read_text() + "\n[kafka]\nbatch_size = 200\n")
    return world, config


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signalled_replay_writes_what_it_read_and_exits_128_plus_signal(
        small_world: tuple[Path, Path], tmp_path: Path, signame: str, code: int) -> None:
    world, config = small_world
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_FIRST_BATCH, signame, "replay",
                           str(world), "--out", str(out), "--config", str(config)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == code, done.stderr
    assert f"{signame}: stopping" in done.stderr and "INTERRUPTED after 200 of" in done.stderr
    assert "Traceback" not in done.stderr and "panicked" not in done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert summary["messages"] == 200 < summary["recording_messages"]
    assert sum(t["in"] for t in summary["topics"].values()) == 200 and summary["reconciled"]
    import pyarrow.parquet as pq

    for kind in ("leads", "review", "handoff", "dlq", "alerts"):
        assert pq.read_table(out / f"{kind}.parquet").num_rows == summary["outputs"][kind]
    assert not (out / ".parts").exists()


def test_an_unwritable_out_is_one_line_and_exit_2(small_world: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    world, _ = small_world
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "out"
    done = subprocess.run([sys.executable, "-m", "esg_leads", "replay", str(world), "--out",
                           str(target)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"esg-leads replay: error: cannot write {target}: Not a directory"]
    assert "Traceback" not in done.stderr


def test_run_refuses_an_unwritable_audit_or_recovery_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for flags in (["--recovery-dir", str(tmp_path / "file" / "r")],
                  ["--config", str(_audit_in(tmp_path, tmp_path / "file" / "a"))]):
        done = subprocess.run([sys.executable, "-m", "esg_leads", "run", "--bootstrap",
                               "127.0.0.1:9", *flags], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("esg-leads run: error: cannot write ")
        assert "Traceback" not in done.stderr


def _audit_in(tmp_path: Path, directory: Path) -> Path:
    config = tmp_path / "audit.toml"
    config.write_text(f'[audit]\ndirectory = "{directory}"\n')
    return config


# ------------------------------------------------------------ world flags

def _generate_spec(argv: list[str]):
    from esg_leads.cli.main import _world_spec, build_parser

    return _world_spec(build_parser().parse_args(["generate", "--out", "/nonexistent", *argv]))


def test_profile_answers_flag_is_on_unless_switched_off() -> None:
    assert _generate_spec([]).profile_answers is True
    assert _generate_spec(["--profile-answers", "on"]).profile_answers is True
    off = _generate_spec(["--profile-answers", "off", "--reviewers", "off"])
    assert (off.profile_answers, off.reviewers) == (False, False)


@hypothesis_settings(deadline=None, max_examples=60)  # builds the whole parser each time
@given(st.text(max_size=12).filter(lambda t: t not in ("on", "off") and not t.startswith("-")))
def test_profile_answers_refuses_any_other_value_in_one_line(text: str) -> None:
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        _generate_spec(["--profile-answers", text])
    assert exit_.value.code == 2
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and "--profile-answers" in lines[0] and "Traceback" not in lines[0]
