"""``replay --processes P``: a bytewax cluster of local processes decides as one process does.

One small world replayed with (P, W, batch) in {(1, 1, 1000), (2, 1, 1000), (2, 2, 7),
(2, 1, 1)}: the decisions
(leads, review cases, handoffs, alerts, dead letters) are equal as sets, two P=2
runs are identical, and the one ``summary.json`` merged from every process
reconciles with the counts of the single process's. Stops and failing processes end
the cluster with an interrupted summary or one error, never a hang.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from esg_leads.cli.main import main
from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows.config import load_settings
from esg_leads.flows.progress import Progress
from esg_leads.replay import cluster
from esg_leads.replay.cluster import ClusterError, SharedFlag, replay_cluster, reserve_ports
from esg_leads.replay.diff import KINDS, compare, load_run
from esg_leads.replay.generator import generate
from esg_leads.replay.runner import tenant_weights
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.settings import Settings

SPEC = WorldSpec(tenants=2, investors=240, properties=50, days=5, seed=11, malformed_rate=0.02,
                 profile_answers=False)
#: Fewer shards than the default: six keys to spread over up to four workers. A 5-day
#: world: review uncertain leads at once and widely, so that cases exist to compare.
SHARDS = {"windows": {"shards_per_tenant": 3},
          "lifecycle": {"uncertain_review_after": 0, "review_band": 0.3}}
#: Summary fields that describe how the run went, not what it counted.
TIMING = {"wall_seconds", "events_per_second", "stages", "processes"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate(SPEC, out)
    return out


def settings_of(world: Path, **overrides: object) -> Settings:
    return load_settings(world / "config.toml", environ={}, overrides={**SHARDS, **overrides})


def run(world: Path, out: Path, processes: int, workers: int,
        batch: int | None = None) -> tuple[dict, dict]:
    settings = settings_of(world, **({} if batch is None else {"kafka": {"batch_size": batch}}))
    summary = replay_cluster(world, out, settings, processes=processes, workers=workers)
    assert json.loads((out / "summary.json").read_text()) == summary
    assert not (out / ".parts").exists()
    return load_run(out), summary


def assert_same_decisions(a: dict, b: dict) -> None:
    report = compare(a, b)
    assert report["equal"], {kind: {k: v for k, v in report[kind].items() if v}
                             for kind in KINDS if isinstance(report.get(kind), dict)}


def counts(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k not in TIMING}


@pytest.fixture(scope="module")
def single(world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("p1w1")
    decided, summary = run(world, out, 1, 1)
    assert decided["leads"] and decided["review"] and decided["dlq"]
    return decided, summary, out


@pytest.fixture(scope="module")
def two_processes(world: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> tuple[dict, dict, Path]:
    out = tmp_path_factory.mktemp("p2w1")
    return (*run(world, out, 2, 1), out)


def audit_rows(out: Path) -> Counter:
    """The audit trail's rows, less when they were processed."""
    table = ds.dataset(out / "audit", format="parquet", partitioning="hive").to_table()
    return Counter(tuple(sorted((k, str(v)) for k, v in row.items() if k != "processed_at"))
                   for row in table.to_pylist())


def test_each_process_writes_its_own_tenants_audit_trail_and_it_is_one_processs(
        single: tuple[dict, dict, Path], two_processes: tuple[dict, dict, Path]) -> None:
    """Audit rows are written by the worker their tenant runs on (one sink partition per
    worker, tagged in the file names), never sent to worker 0; the trail is the same."""
    out = two_processes[2]
    tags: dict[str, set[str]] = {}
    for path in (out / "audit").glob("tenant=*/date=*/part*.parquet"):
        tenant = path.parts[-3].removeprefix("tenant=")
        tags.setdefault(tenant, set()).add(re.match(r"part(-p\d+)-", path.name).group(1))
    assert len(tags) == 2 and all(len(t) == 1 for t in tags.values())
    assert len(set().union(*tags.values())) == 2  # two tenants, one on each process
    assert audit_rows(out) == audit_rows(single[2])


def test_tenant_weights_count_each_tenants_messages(world: Path) -> None:
    settings = settings_of(world)
    tenants = sorted(settings.tenants)
    values = [m.value or b"" for m in RecordingReader(world)]
    weights = tenant_weights(world, tenants)
    assert weights == {t: sum(f'"tenant":"{t}"'.encode() in v for v in values) for t in tenants}
    assert all(weights.values()) and sum(weights.values()) <= len(values)


#: (P, W, batch size): with tests/flows/test_determinism.py ((1, 1) at 1, 7, 999, 1000;
#: (1, 2) at 7 and 1000) a representative part of the issue's (P, W) x {1, 7, 1000}
#: matrix, every P and W at every batch size once; the reference (1, 1) reads at 1000.
@pytest.mark.parametrize(("processes", "workers", "batch"), [(2, 1, 1000), (2, 2, 7), (2, 1, 1)])
def test_processes_decide_as_one_process_and_the_merged_summary_reconciles(
        world: Path, single: tuple[dict, dict], two_processes: tuple[dict, dict],
        tmp_path: Path, processes: int, workers: int, batch: int) -> None:
    decided, summary = (two_processes[:2] if (processes, workers, batch) == (2, 1, 1000)
                        else run(world, tmp_path, processes, workers, batch))
    assert_same_decisions(single[0], decided)
    assert summary["reconciled"] and summary["interrupted"] is False
    for topic, row in summary["topics"].items():
        assert row["in"] == row["used"] + row["dead_lettered"], topic
    # Every process's counts are in the one summary: the same as one process's.
    assert counts(summary) == counts(single[1])
    assert summary["stages"].keys() == single[1]["stages"].keys()
    # Each process read its own tenants' messages (two tenants, one on each process),
    # reconciles them on its own (all their work is done there) and sent no input
    # event to another; each says what it read and the CPU it took.
    shares = summary["processes"]
    assert [p["process_id"] for p in shares] == list(range(processes))
    assert all(p["reconciled"] and p["inputs_sent"] == 0 for p in shares), shares
    assert sum(p["messages_read"] for p in shares) == summary["messages"]
    assert all(p["messages_read"] > 0 for p in shares)
    assert all(p["cpu_seconds"] > 0 for p in shares)


def test_a_stop_before_the_start_writes_an_empty_interrupted_summary(world: Path,
                                                                     tmp_path: Path) -> None:
    """The stop reaches the reading process, wherever the cluster placed the input."""
    stop = SharedFlag(cluster.multiprocessing.get_context("spawn"))
    stop.set()
    summary = replay_cluster(world, tmp_path, settings_of(world), processes=2, stop=stop)
    assert summary["interrupted"] is True and summary["messages"] == 0
    assert summary["recording_messages"] > 0 and summary["reconciled"]
    assert sum(summary["outputs"].values()) == 0


class CrashingClock:
    """A clock whose first reading kills its process, as a segfault or an OOM kill would."""

    def __call__(self) -> datetime:
        os._exit(3)
        return datetime.now(timezone.utc)  # pragma: no cover


def test_a_failing_process_is_one_error_naming_it_and_nothing_is_finalized(
        world: Path, tmp_path: Path) -> None:
    with pytest.raises(ClusterError) as raised:
        replay_cluster(world, tmp_path, settings_of(world), processes=2, clock=CrashingClock())
    message = str(raised.value)
    assert re.fullmatch(r"replay process [01] of 2 failed \(.+\); no outputs were written",
                        message), message
    assert "\n" not in message
    assert not (tmp_path / "leads.parquet").exists() and not (tmp_path / "summary.json").exists()


def test_a_taken_port_starts_the_cluster_again_on_other_ports(
        world: Path, single: tuple[dict, dict], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start gets a port something else listens on: the process that cannot
    bind it exits before reading anything, and the retry on fresh ports decides as usual."""
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", 0))
    squatter.listen()
    starts = []

    def first_port_taken(count: int) -> list[socket.socket]:
        sockets = reserve_ports(count)
        if not starts:
            sockets[0].close()  # process 0 is the first to bind its port
            sockets[0] = squatter
        starts.append(count)
        return sockets

    monkeypatch.setattr(cluster, "reserve_ports", first_port_taken)
    decided, summary = run(world, tmp_path, 2, 1)
    assert len(starts) == 2
    assert_same_decisions(single[0], decided)
    assert counts(summary) == counts(single[1])


def test_reserved_ports_are_distinct_and_taken_by_nobody_else() -> None:
    sockets = reserve_ports(3)
    try:
        ports = [s.getsockname()[1] for s in sockets]
        assert len(set(ports)) == 3
        for port in ports:
            other = socket.socket()
            with pytest.raises(OSError):  # a bind without SO_REUSEADDR is refused
                other.bind(("127.0.0.1", port))
            other.close()
            child = socket.socket()  # as Rust's TcpListener::bind: SO_REUSEADDR, listen
            child.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            child.bind(("127.0.0.1", port))
            child.listen()
            child.close()
    finally:
        for s in sockets:
            s.close()


def test_cli_replays_on_two_processes_identically_run_to_run(
        world: Path, two_processes: tuple[dict, dict], tmp_path: Path) -> None:
    """``esg-leads replay --processes 2`` in a process of its own, against the module's
    other two-process run: every record and field equal (but processing time), not only
    as sets."""
    config = tmp_path / "config.toml"
    config.write_text((world / "config.toml").read_text()
                      + "\n[windows]\nshards_per_tenant = 3\n"
                      + "\n[lifecycle]\nuncertain_review_after = 0\nreview_band = 0.3\n")
    done = subprocess.run([sys.executable, "-m", "esg_leads", "replay", str(world), "--out",
                           str(tmp_path / "out"), "--config", str(config), "--processes", "2"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "reconciled: yes" in done.stderr and "Traceback" not in done.stderr
    assert "error connecting" not in done.stdout + done.stderr  # no timely retry noise
    assert load_run(tmp_path / "out") == two_processes[0]


def test_cli_refuses_metrics_with_processes(world: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(world), "--out", str(tmp_path), "--processes", "2",
                 "--metrics-port", "0"]) == 2
    assert "--metrics-port" in capsys.readouterr().err
    assert main(["replay", str(world), "--out", str(tmp_path), "--processes", "0"]) == 2



def test_a_signal_to_the_cli_stops_every_process_and_writes_an_interrupted_summary(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A real SIGTERM lands while the progress bar first shows (before the cluster has
    read anything, so the count is exact): the processes stop and exit, the parent
    writes the interrupted summary and exits 128 + 15. The stop is set on a relay thread
    (connectors/signals.py), so the bar waits for its line, said once the stop is set."""
    update = Progress.update
    said: list[str] = []

    def update_then_signal(self: Progress, done: int, total: int | None = None) -> None:
        if not getattr(update_then_signal, "sent", False):
            update_then_signal.sent = True  # type: ignore[attr-defined]
            os.kill(os.getpid(), signal.SIGTERM)  # cmd_replay's handler takes it
            deadline = time.monotonic() + 30
            while "SIGTERM: stopping" not in "".join(said) and time.monotonic() < deadline:
                said.append(capsys.readouterr().err)
                time.sleep(0.01)
        update(self, done, total)

    monkeypatch.setattr(Progress, "update", update_then_signal)
    out = tmp_path / "out"
    assert main(["replay", str(world), "--out", str(out), "--processes", "2",
                 "--workers", "2"]) == 143
    err = "".join(said) + capsys.readouterr().err
    assert "SIGTERM: stopping" in err and "INTERRUPTED after 0 of" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["reconciled"]
    assert summary["messages"] == 0 < summary["recording_messages"]
    assert not (out / ".parts").exists()


def test_cli_a_killed_process_is_one_line_and_exit_1_never_a_hang(
        world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Process 1 is killed as soon as it starts; process 0 would then wait for it inside
    timely for ever, unless stopped."""
    wait = cluster._wait

    def kill_process_1_then_wait(children: list, *args: object) -> object:
        os.kill(children[1].pid, signal.SIGKILL)
        return wait(children, *args)

    monkeypatch.setattr(cluster, "_wait", kill_process_1_then_wait)
    assert main(["replay", str(world), "--out", str(tmp_path / "out"), "--processes", "2"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == (
        "esg-leads replay: error: replay process 1 of 2 failed (killed by SIGKILL); "
        "no outputs were written")
    assert not (tmp_path / "out" / "summary.json").exists()


#: A parent (argv[1:] is the child's command) that starts a child, waits until the
#: child has armed its watch of it, prints the child's pid and dies of SIGKILL.
PARENT_THAT_DIES = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:] + [str(os.getpid())], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
assert child.stdout.readline() == "armed\\n"
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""
#: A cluster process that would otherwise never exit: only the watch can end it.
CHILD_THAT_WAITS = """
import sys, threading
from esg_leads.replay.cluster import _die_with_parent
_die_with_parent(int(sys.argv[1]))
print("armed", flush=True)
threading.Event().wait()
"""


def test_a_cluster_process_exits_when_the_replay_process_is_killed(tmp_path: Path) -> None:
    """Its parent is the fork server, which outlives a killed replay while any cluster
    process lives: each process watches the replay's process itself."""
    done = subprocess.run([sys.executable, "-c", PARENT_THAT_DIES, sys.executable, "-c",
                           CHILD_THAT_WAITS], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == -9, done.stderr
    pid = int(done.stdout)
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    try:  # readable once the process has exited; the bound only keeps a failure finite
        assert select.select([handle], [], [], 120)[0], f"process {pid} outlived its parent"
    finally:
        os.close(handle)
