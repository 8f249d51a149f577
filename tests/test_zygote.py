"""The contract of ``tests/zygote.py``: a forked ``esg-leads`` child behaves as an exec'd one.

Each test runs in both modes, forked from the zygote and exec'd as a new interpreter
(``TEST_ZYGOTE=0``), and expects the same: exit statuses, streams, working directory,
environment, sessions and signals. Only light commands (``--version``, ``schema``,
``config``, ``broker``) so that the exec'd half stays cheap.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import zygote
from tests.kafka_helpers import ESG_LEADS


@pytest.fixture(params=["forked", "exec"], autouse=True)
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "forked" and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfds here: the zygote is not used")
    monkeypatch.setattr(zygote, "FORK", request.param == "forked")
    return request.param


def broker(**kwargs) -> tuple[zygote.Child | subprocess.Popen, str]:
    """A dev broker child (runs until signalled) and the first line it printed."""
    child = zygote.popen([ESG_LEADS, "broker", "--port", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, **kwargs)
    return child, child.stdout.readline()


def test_exit_status_and_captured_streams() -> None:
    done = zygote.run([ESG_LEADS, "--version"], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.startswith("esg-leads "), done.stderr) == (0, True, "")
    wrong = zygote.run([ESG_LEADS, "schema", "nope"], capture_output=True, timeout=60)
    assert wrong.returncode == 2 and wrong.stdout == b""
    assert wrong.stderr.startswith(b"esg-leads schema: error: unknown topic 'nope'")


def test_working_directory_and_environment_are_the_requests(tmp_path: Path) -> None:
    (tmp_path / "here.toml").write_text("[windows]\nshards_per_tenant = 7\n")
    env = {**os.environ, "ESG_LEADS_KAFKA__BATCH_SIZE": "123"}
    done = zygote.run([ESG_LEADS, "config", "--config", "here.toml", "--show-origin"],
                      capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert any("shards_per_tenant = 7" in line and "here.toml" in line for line in lines)
    assert any("batch_size = 123" in line and "ESG_LEADS_KAFKA__BATCH_SIZE" in line
               for line in lines)
    # The test's own environment is untouched, and the next child does not inherit it.
    assert "ESG_LEADS_KAFKA__BATCH_SIZE" not in os.environ
    plain = zygote.run([ESG_LEADS, "config", "--show-origin"], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path)
    assert "ESG_LEADS_KAFKA__BATCH_SIZE" not in plain.stdout


def test_a_new_session_only_when_asked() -> None:
    alone, line = broker(start_new_session=True)
    shared, _ = broker()
    try:
        assert line.startswith("bootstrap=127.0.0.1:")
        assert os.getsid(alone.pid) == alone.pid
        assert os.getsid(shared.pid) != shared.pid
    finally:
        for child in (alone, shared):
            child.kill()
            child.wait(30)
            child.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_child_with_the_status_subprocess_gives(sig: int) -> None:
    child, _ = broker(start_new_session=True)
    try:
        assert child.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0.2)
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(0)  # a poll, as Popen's
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(-1)  # a deadline already past
        child.send_signal(sig)
        code = child.wait(30)
    finally:
        child.kill()
        child.wait(30)
        child.stdout.close()
    # SIGKILL: -9; SIGTERM and SIGINT: the broker's own clean stop.
    assert code == (-9 if sig == signal.SIGKILL else 0)
    assert child.poll() == code
    child.kill()  # after the end: nothing to signal, no error


def test_a_run_past_its_timeout_is_killed() -> None:
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        zygote.run([ESG_LEADS, "broker", "--port", "0"], capture_output=True, timeout=0.5)
    assert time.monotonic() - started < 30


ABANDONS = """
import subprocess, sys
sys.path[:0] = [sys.argv[1]]
from tests import zygote
child = zygote.popen([sys.argv[2], "broker", "--port", "0"], stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
"""


def test_children_left_running_die_with_the_test_process(mode: str) -> None:
    """A test process that ends (or crashes) without stopping its children: the zygote
    kills them. Exec'd children are not (``subprocess`` semantics): only the forked mode."""
    if mode == "exec":
        pytest.skip("exec'd children outlive their parent, as with subprocess")
    done = subprocess.run([sys.executable, "-c", ABANDONS, str(Path(__file__).parents[1]),
                           ESG_LEADS], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    try:
        pidfd = os.pidfd_open(int(done.stdout))
    except ProcessLookupError:
        return  # killed and reaped already
    try:
        readable, _, _ = select.select([pidfd], [], [], 30)
        assert readable, "the abandoned child is still running"
    finally:
        os.close(pidfd)


def test_a_child_that_must_start_its_own_interpreter_is_execd(mode: str) -> None:
    """What an interpreter reads only at start (the hash seed...) cannot be given to a
    fork: such a child is exec'd, in either mode."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    child = zygote.popen([ESG_LEADS, "--version"], stdout=subprocess.DEVNULL, env=env)
    assert isinstance(child, subprocess.Popen)
    assert child.wait(60) == 0


def test_a_requester_that_goes_away_costs_only_its_request(mode: str) -> None:
    if mode == "exec":
        pytest.skip("no zygote")
    import orjson
    import socket

    gone = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    gone.connect(zygote._zygote())
    request = {"argv": [ESG_LEADS, "broker", "--port", "0"], "env": dict(os.environ),
               "cwd": os.getcwd(), "new_session": True}
    with open(os.devnull, "rb+") as null:
        socket.send_fds(gone, [orjson.dumps(request)], [null.fileno()] * 3)
    gone.close()  # before the pid comes back: the zygote kills that child, and lives on
    done = zygote.run([ESG_LEADS, "--version"], capture_output=True, timeout=60)
    assert done.returncode == 0
