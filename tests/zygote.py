"""``esg-leads`` processes for tests, forked from one that has already imported everything.

Every ``esg-leads run`` / ``crm-sync`` / ``replay`` a test starts as a new interpreter spends
~1.3 CPU-seconds importing (SciPy alone 0.6 s: River reaches ``scipy.stats`` from
``river.drift``, ``river.metrics`` and ``river.linear_model``) before it does anything, and
the suite starts ~70 of them. Here a *zygote* (the Android and Chromium pattern) imports
the CLI and every module its commands import once per test worker, then forks a child per
request, which runs ``esg_leads.cli.main.main`` with the request's argv, environment,
working directory and standard streams. The child is a real process: its own pid, session
(``start_new_session``), signals (SIGKILL mid-snapshot, SIGTERM, SIGINT), exit status and
file descriptors, as ``subprocess`` gives; only the interpreter start-up and imports are
shared. What it does not exercise, the installed console script and a cold start, is
covered by tests that still exec the command (``tests/test_packaging.py``,
``tests/cli/test_main.py``). A child's hash seed is its zygote's (one per test worker).

The protocol, per child: the test connects to the zygote's Unix socket (``SOCK_SEQPACKET``:
each message arrives whole and alone, a pid never runs into the status after it) and sends the
request (JSON) with stdin, stdout and stderr as file descriptors (``SCM_RIGHTS``); the
zygote forks, answers the pid with a pidfd for it (signals go through the pidfd, so they can
never reach a recycled pid), reaps the child when it exits (``SIGCHLD`` wakes the loop) and
sends its exit status the way ``subprocess`` reports it (negative: killed by that signal).
The zygote ends when its parent, the test worker, closes its stdin, and kills the children
it still has. ``TEST_ZYGOTE=0`` starts every child as a new interpreter instead (as does a
system without pidfds); the contract both keep is pinned by ``tests/test_zygote.py``.
"""

from __future__ import annotations

import atexit
import gc
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

#: What the CLI's commands import inside their functions (``esg_leads/cli``): loaded by the
#: zygote so that no child imports them again.
PRELOAD = (
    "esg_leads.cli.main",
    "esg_leads.flows.run",
    "esg_leads.flows.pipeline",
    "esg_leads.flows.crm_sync",
    "esg_leads.flows.webhooks",
    "esg_leads.flows.logs",
    "esg_leads.flows.progress",
    "esg_leads.flows.config",
    "esg_leads.replay.runner",
    "esg_leads.replay.cluster",
    "esg_leads.connectors.fake_crm",
    "esg_leads.connectors.metrics",
    "esg_leads.connectors.kafka_source",
)
_MAX_REQUEST = 1 << 20
#: Fork children from the zygote (``TEST_ZYGOTE=0``: exec each one, as ``subprocess`` does).
FORK = os.environ.get("TEST_ZYGOTE", "1") != "0" and hasattr(os, "pidfd_open")


# ------------------------------------------------------------------ the test side


@dataclass
class Child:
    """The part of :class:`subprocess.Popen` the tests use, for a child of the zygote."""

    args: list[str]
    pid: int
    _pidfd: int
    _status: socket.socket
    stdout: IO | None = None
    stderr: IO | None = None
    returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._status.setblocking(False)
            try:
                self._read_status()
            except BlockingIOError:
                pass
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if timeout is not None and timeout <= 0:  # as Popen: a poll, then the verdict
                if self.poll() is None:
                    raise subprocess.TimeoutExpired(self.args, timeout)
                return self.returncode
            self._status.setblocking(True)
            self._status.settimeout(timeout)
            try:
                self._read_status()
            except TimeoutError:
                raise subprocess.TimeoutExpired(self.args, timeout) from None
        return self.returncode

    def __del__(self) -> None:  # never waited for: its descriptors go with it
        if self.returncode is None and not self._status._closed:
            self._status.close()
            os.close(self._pidfd)

    def _read_status(self) -> None:
        data = self._status.recv(64)
        if not data:  # the zygote died without reporting: never pretend success
            raise RuntimeError(f"the zygote ended before child {self.pid} reported its status")
        self.returncode = int(data)
        self._status.close()
        os.close(self._pidfd)

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            try:
                signal.pidfd_send_signal(self._pidfd, sig)
            except ProcessLookupError:  # exited, not yet reported
                pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self.stdout, self.stderr):
            if stream is not None:
                stream.close()
        self.wait()


def popen(args: list[str], *, stdin: Any = None, stdout: Any = None, stderr: Any = None,
          cwd: str | Path | None = None, env: dict[str, str] | None = None,
          start_new_session: bool = False, text: bool = False) -> Child | subprocess.Popen:
    """``subprocess.Popen(args, ...)`` for ``args = ["esg-leads", *arguments]``.

    ``stdout`` / ``stderr``: ``None`` (this process's), a file, ``subprocess.PIPE``,
    ``subprocess.DEVNULL``, or for stderr ``subprocess.STDOUT``; ``stdin``: ``None`` or
    ``DEVNULL`` (both: nothing to read) or a file.
    """
    if not FORK or _starts_differently(env):
        return subprocess.Popen(args, stdin=subprocess.DEVNULL if stdin is None else stdin,
                                stdout=stdout, stderr=stderr, cwd=cwd, env=env,
                                start_new_session=start_new_session, text=text)
    opened: list[int] = []  # ours to close once the zygote holds its copies

    def fd_of(spec: Any, default: int) -> int:
        if spec is None:
            return default
        if spec == subprocess.DEVNULL:
            opened.append(os.open(os.devnull, os.O_RDWR))
            return opened[-1]
        return spec if isinstance(spec, int) else spec.fileno()

    readers: dict[str, IO] = {}

    def pipe(name: str) -> int:
        read, write = os.pipe()
        opened.append(write)
        readers[name] = open(read, encoding="utf-8" if text else None,  # noqa: SIM115
                             mode="r" if text else "rb")
        return write

    in_fd = fd_of(subprocess.DEVNULL if stdin is None else stdin, 0)
    out_fd = pipe("stdout") if stdout == subprocess.PIPE else fd_of(stdout, 1)
    if stderr == subprocess.STDOUT:
        err_fd = out_fd
    else:
        err_fd = pipe("stderr") if stderr == subprocess.PIPE else fd_of(stderr, 2)
    request = {"argv": [str(a) for a in args], "env": dict(os.environ if env is None else env),
               "cwd": str(cwd or os.getcwd()), "new_session": start_new_session}
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        connection.connect(_zygote())
        socket.send_fds(connection, [orjson.dumps(request)], [in_fd, out_fd, err_fd])
        message, fds, _, _ = socket.recv_fds(connection, 64, 1)
    finally:
        for fd in opened:
            os.close(fd)
    if not fds:
        connection.close()
        raise RuntimeError(f"the zygote refused {args}: {message.decode(errors='replace')}")
    return Child(list(args), int(message), fds[0], connection,
                 stdout=readers.get("stdout"), stderr=readers.get("stderr"))


def _starts_differently(env: dict[str, str] | None) -> bool:
    """Whether ``env`` sets what an interpreter reads only when it starts (``PYTHON*``:
    the hash seed, I/O encoding, ...) otherwise than the zygote's: such a child is exec'd,
    since a fork would silently keep the zygote's."""
    if _zygote_env is None:
        return False
    env = dict(os.environ) if env is None else env
    names = {n for n in (*env, *_zygote_env) if n.startswith("PYTHON")}
    return any(env.get(n) != _zygote_env.get(n) for n in names)


def run(args: list[str], *, capture_output: bool = False,
        text: bool = False, timeout: float | None = None, cwd: str | Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(args, ...)`` for ``args = ["esg-leads", *arguments]``.

    Captured output goes through temporary files (no pipe to drain while waiting), and is
    read back once the child has exited; on timeout the child is killed, as ``run`` does.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = popen(args, stdout=out if capture_output else None,
                      stderr=err if capture_output else None, cwd=cwd, env=env)
        try:
            code = child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise
        captured = []
        for stream in (out, err):
            stream.seek(0)
            data = stream.read()
            captured.append(data.decode() if text else data)
    return subprocess.CompletedProcess(args, code, *(captured if capture_output else (None, None)))


_lock = threading.Lock()
_address: str | None = None
#: The environment the zygote started with (what its interpreter read at start).
_zygote_env: dict[str, str] | None = None


def _zygote() -> str:
    """The socket of this process's zygote, started on first use."""
    global _address, _zygote_env
    with _lock:
        if _address is None:
            directory = tempfile.mkdtemp(prefix="esg-zygote-")
            address = os.path.join(directory, "socket")
            # Its own session: a terminal's Ctrl-C goes to the test worker, whose exit
            # (stdin closing) ends the zygote and its children in order.
            _zygote_env = dict(os.environ)
            process = subprocess.Popen([sys.executable, __file__, address], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=_zygote_env,
                                       start_new_session=True)
            ready = process.stdout.readline()
            if ready != b"ready\n":
                process.kill()
                raise RuntimeError(f"the zygote did not start: {ready!r}")

            def stop() -> None:  # closing its stdin ends it; it kills children left behind
                process.stdin.close()  # and removes its socket and directory
                process.wait(30)

            atexit.register(stop)
            _address = address
        return _address


# ------------------------------------------------------------------ the zygote side


def _serve(address: str) -> dict | None:
    """Fork a child per request until stdin closes; in a child, return its request."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(address)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears it
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_read, selectors.EVENT_READ, "child")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    children: dict[int, socket.socket] = {}
    gc.collect()
    gc.freeze()  # children share the imported modules' pages instead of copying them
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while True:
        for key, _ in selector.select():
            if key.data == "parent" and not os.read(sys.stdin.fileno(), 4096):
                for pid in children:
                    os.kill(pid, signal.SIGKILL)
                for pid in list(children):
                    _report(children, *os.waitpid(pid, 0))
                return None
            if key.data == "child":
                os.read(wake_read, 4096)
                _reap(children)
            if key.data == "accept":
                connection, _ = listener.accept()
                request = _fork(connection, children)
                if request is not None:  # in the child: drop the zygote's ends
                    selector.close()
                    listener.close()
                    for other in children.values():
                        other.close()
                    signal.set_wakeup_fd(-1)
                    os.close(wake_read)
                    os.close(wake_write)
                    return request


def _fork(connection: socket.socket, children: dict[int, socket.socket]) -> dict | None:
    """Fork for the request on ``connection``; in the child, return the request. A
    requester that is gone (its test interrupted) costs its request, never the zygote."""
    fds: list[int] = []
    try:
        message, fds, _, _ = socket.recv_fds(connection, _MAX_REQUEST, 3)
        request = orjson.loads(message)
        if len(fds) != 3:
            raise ValueError(f"expected stdin, stdout and stderr, got {len(fds)} descriptors")
    except (OSError, ValueError) as error:
        try:
            connection.sendall(str(error).encode())
        except OSError:
            pass
        connection.close()
        for fd in fds:
            os.close(fd)
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in set(fds):
            if fd > 2:
                os.close(fd)
        return request
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    try:
        socket.send_fds(connection, [str(pid).encode()], [pidfd])
    except OSError:  # nobody will ever wait for or stop this child
        os.kill(pid, signal.SIGKILL)
    os.close(pidfd)
    children[pid] = connection  # reaped as any other; its report goes nowhere
    return None


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        _report(children, pid, status)


def _report(children: dict[int, socket.socket], pid: int, status: int) -> None:
    connection = children.pop(pid)
    code = os.waitstatus_to_exitcode(status)
    try:
        connection.sendall(str(code).encode())
    except OSError:  # the test gave up on it (its process ended): nobody to tell
        pass
    connection.close()


def _become(request: dict) -> None:
    """In the forked child: the request's session, directory and environment, then the CLI."""
    if request["new_session"]:
        os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    sys.argv = request["argv"]
    from esg_leads.cli.main import main

    sys.exit(main())  # the interpreter's own exit: threads joined, atexit run, streams flushed


if __name__ == "__main__":
    import importlib

    sys.path[0] = os.path.dirname(sys.executable)  # as the console script has, not tests/

    for name in PRELOAD:
        importlib.import_module(name)
    child_request = _serve(sys.argv[1])
    if child_request is not None:
        _become(child_request)
    else:  # also when the test worker was killed: its atexit never ran
        os.unlink(sys.argv[1])
        os.rmdir(os.path.dirname(sys.argv[1]))
