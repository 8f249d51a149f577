"""``esg-leads replay --processes P``: one replay as a bytewax cluster of P local processes.

The parent starts P processes of W workers each; every one runs the same flow
(:func:`replay.runner.run_flow`) as process ``i`` of a bytewax cluster on loopback.
Each tenant's keyed steps run together on one of the ``P × W`` workers, tenants
placed to balance their messages in the recording (counted once, here:
:func:`replay.runner.tenant_weights`; :func:`flows.placement.assign_tenants`), and
every worker reads the recording itself, handing on only its own tenants' messages
(:mod:`flows.reading`), so that no input event crosses processes (each process's
``inputs_sent`` in the summary counts those that did: 0); each worker writes its own part files
(``kind-<worker>.parquet``, numbered across the cluster) and its own tenants' audit
files (one audit sink partition per worker). Each process writes its share of the telemetry to
``.parts/process-<i>.json``; once every process has exited 0 the parent joins the
parts and writes one ``summary.json`` over the merged counts
(:func:`replay.runner.write_outputs`), reconciled as a single process's would be.
The dead-letter key store is one SQLite file shared by the processes
(:mod:`connectors.key_vault`: every call is one transaction under SQLite's file
locks); the parent creates it before they start.

Ports. Timely binds each process's address itself, so the parent cannot hand it an
open socket. Instead the parent *reserves* P loopback ports: it binds them with
``SO_REUSEADDR`` but never listens, and holds them until the cluster has exited.
Rust's ``TcpListener::bind`` (which timely uses) sets ``SO_REUSEADDR`` too, so the
child can bind and listen on its reserved port, while the kernel gives the port to
nobody else (not to ``bind(0)``, not as an ephemeral port of a connection, not to a
bind without ``SO_REUSEADDR``). Should a port be taken anyway, the process that
cannot bind exits with :data:`EX_ADDRESS_IN_USE` before any message is read, and
the parent starts the whole cluster again on fresh ports, :data:`ATTEMPTS` times.

The processes are forked from multiprocessing's fork server (:func:`_context`): a
script that calls :func:`replay_cluster` must guard its entry point with
``if __name__ == "__main__":``, as multiprocessing requires.

Signals and failures. SIGINT/SIGTERM to the parent (``esg-leads replay`` sets
``stop``) or to any process set one flag in shared memory that every process reads:
the reading process ends the input where it is, the cluster finishes what it has
read, and the summary says ``"interrupted": true``, as with one process. A process
that exits non-zero (a crash, a kill) stops the others — timely would leave them
waiting for their peer for ever — and the parent raises :class:`ClusterError`
naming it; nothing is finalized. An output that cannot be written stops the input
through the same flag and raises :class:`~connectors.parquet_sink.OutputError`.
Each process exits when the parent does (:func:`_die_with_parent`): a killed parent
leaves no cluster running that nobody would finalize.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import select
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from esg_leads.connectors.parquet_sink import OutputError
from esg_leads.connectors.recording import RecordingReader
from esg_leads.flows.exchange import INPUTS_SENT
from esg_leads.flows.steps import Clock, system_clock
from esg_leads.flows.telemetry import Telemetry
from esg_leads.replay.runner import (
    key_vault,
    prepare_output,
    replay,
    replay_settings,
    run_flow,
    tenant_weights,
    write_outputs,
)
from esg_leads.schemas.settings import Settings

#: Exit status of a process whose cluster address was taken (BSD's EX_TEMPFAIL).
EX_ADDRESS_IN_USE = 75
#: Cluster starts before giving up on finding free ports.
ATTEMPTS = 3


class ClusterError(Exception):
    """A process of the cluster failed; the message is one line naming it."""


class SharedFlag:
    """A flag in shared memory: set from a signal handler in any process, read by all.

    No lock: a ``multiprocessing.Event`` takes one, and a signal landing while its own
    process holds it (in ``is_set``) would deadlock the handler.
    """

    def __init__(self, context: Any) -> None:
        self._value = context.RawValue("b", 0)

    def set(self) -> None:
        self._value.value = 1

    def is_set(self) -> bool:
        return bool(self._value.value)


def reserve_ports(count: int) -> list[socket.socket]:
    """``count`` distinct loopback ports, bound but not listening (module docstring)."""
    sockets = []
    try:
        for _ in range(count):
            reserved = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(reserved)
            reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            reserved.bind(("127.0.0.1", 0))
    except OSError:
        for reserved in sockets:
            reserved.close()
        raise
    return sockets


def replay_cluster(recording: str | Path, out: str | Path, settings: Settings, *,
                   processes: int, workers: int = 1,
                   progress: Callable[[int, int], None] | None = None,
                   clock: Clock = system_clock, stop: Any = None) -> dict:
    """Replay ``recording`` into ``out`` on ``processes`` local processes of ``workers``
    workers each; returns the merged summary (also written to ``out/summary.json``).

    ``stop`` (anything with ``is_set()``, e.g. a ``threading.Event`` a signal handler
    sets) ends the input early. One process: :func:`replay.runner.replay` itself.
    """
    if processes < 1 or workers < 1:
        raise ValueError("processes and workers must be at least 1")
    if processes == 1:
        return replay(recording, out, settings, workers=workers, progress=progress,
                      clock=clock, stop=stop)
    settings = replay_settings(settings)
    recording, out = Path(recording), Path(out)
    total = RecordingReader(recording).count()
    started = time.perf_counter()
    weights = tenant_weights(recording, sorted(settings.tenants))  # once, for every process
    for attempt in range(1, ATTEMPTS + 1):
        prepare_output(out)
        # Made once here, so the processes only ever open an existing store.
        key_vault(settings, out).close()
        if _run_cluster(recording, out, settings, processes, workers, progress, clock, stop,
                        total, weights):
            break
        print(f"esg-leads replay: a cluster port was taken (attempt {attempt} of {ATTEMPTS}); "
              "starting again on other ports", file=sys.stderr, flush=True)
    else:
        raise ClusterError(f"no free loopback ports for {processes} processes after "
                           f"{ATTEMPTS} attempts")
    telemetry, emitted, stopped_early, shares = Telemetry(), 0, False, []
    for process_id in range(processes):
        path = out / ".parts" / f"process-{process_id}.json"
        try:
            share = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise ClusterError(f"replay process {process_id} of {processes} left no readable "
                               f"telemetry at {path}: {error}") from None
        if share["failure"] is not None:
            failure = share["failure"]
            error = (OSError(failure["errno"], failure["message"]) if failure["errno"]
                     else OSError(failure["message"]))
            raise OutputError(failure["path"], error)
        telemetry.absorb(share["telemetry"])
        emitted += share["emitted"]
        stopped_early = stopped_early or share["stopped_early"]
        own = Telemetry()
        own.absorb(share["telemetry"])
        shares.append({"process_id": process_id, "messages_read": share["emitted"],
                       # Each process reads its own tenants' messages and does all their
                       # work: its own counts reconcile, and it sends no input event.
                       "reconciled": own.summary({}, share["emitted"], 0)["reconciled"],
                       "inputs_sent": share["inputs_sent"],
                       "cpu_seconds": round(share["cpu_seconds"], 3),
                       "flow_seconds": round(share["seconds"], 3)})
    # How the work spread: the CPU of each process shows a cluster whose keys land
    # on one of them (the summary's counts are the merged ones above).
    return write_outputs(settings, recording, out, telemetry, emitted=emitted,
                         stopped_early=stopped_early, seconds=time.perf_counter() - started,
                         extra={"processes": shares})


def _run_cluster(recording: Path, out: Path, settings: Settings, processes: int, workers: int,
                 progress: Callable[[int, int], None] | None, clock: Clock, stop: Any,
                 total: int, weights: dict[str, int]) -> bool:
    """One start of the cluster; ``False`` when a process could not bind its port."""
    context = _context()
    flag, emitted = SharedFlag(context), context.RawValue("q", 0)
    reserved = reserve_ports(processes)
    try:
        addresses = [f"127.0.0.1:{s.getsockname()[1]}" for s in reserved]
        children = [context.Process(
            target=_process_main, name=f"replay process {i}",
            args=(i, addresses, recording, out, settings, workers, clock, flag, emitted,
                  os.getpid(), weights))
            for i in range(processes)]
        if progress is not None:
            progress(0, total)
        if stop is not None and stop.is_set():
            flag.set()  # stopped before the start: the cluster reads nothing
        for child in children:
            child.start()
        failed = _wait(children, flag, stop, emitted, progress, total)
    finally:
        for s in reserved:
            s.close()
    if failed is None:
        return True
    index = children.index(failed)
    if failed.exitcode == EX_ADDRESS_IN_USE:
        return False
    code = failed.exitcode
    how = (f"killed by {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exit status {code}; its error is above")
    raise ClusterError(f"replay process {index} of {processes} failed ({how}); "
                       "no outputs were written")


def _context() -> Any:
    """Processes forked from a fork server that has imported the flow's modules once.

    Not a plain fork: the parent may hold threads (a progress bar, a metrics server,
    bytewax's runtime), which a forked child would inherit half-copied; the fork
    server is a fresh single-threaded interpreter. Not spawn: each process would
    import bytewax, River and pyarrow again (seconds each, on every start); the
    server imports them once per parent. Where there is no fork server: spawn.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["esg_leads.replay.runner"])  # no effect once the server runs
    return context


def _wait(children: Sequence[Any], flag: SharedFlag, stop: Any, emitted: Any,
          progress: Callable[[int, int], None] | None, total: int) -> Any:
    """Wait for every process; the first that exits non-zero (others stopped), or None."""
    pending = {child.sentinel: child for child in children}
    shown = 0  # _run_cluster showed 0 before the start
    while pending:
        # Wakes on an exit at once; the timeout only paces the progress bar and
        # passes a stop on (a flag in this process's memory) to the cluster.
        for sentinel in wait(list(pending), timeout=0.25):
            child = pending.pop(sentinel)
            child.join()
            if child.exitcode != 0:
                _stop(list(pending.values()))
                return child
        if stop is not None and stop.is_set():
            flag.set()
        if progress is not None and emitted.value != shown:
            shown = emitted.value
            progress(shown, total)
    return None


def _stop(children: Sequence[Any]) -> None:
    """Kill the other processes of a failed cluster: no grace period, as their part
    files are never finalized, and a process waiting on its dead peer inside timely
    would not run a SIGTERM handler anyway (Python handlers run between bytecodes)."""
    for child in children:
        child.kill()
    for child in children:
        child.join()


def _process_main(process_id: int, addresses: list[str], recording: Path, out: Path,
                  settings: Settings, workers: int, clock: Clock, flag: SharedFlag,
                  emitted: Any, parent: int, weights: dict[str, int]) -> None:
    """One process of the cluster (runs in a forked or spawned interpreter)."""
    _die_with_parent(parent)
    for signum in (signal.SIGINT, signal.SIGTERM):
        # A terminal's Ctrl-C reaches every process of the group: each stops the
        # whole input, idempotently, and lets the cluster finish what it has read.
        signal.signal(signum, lambda *_: flag.set())

    def progress(done: int, _total: int) -> None:
        emitted.value = done

    _await_listeners([int(a.rsplit(":", 1)[1]) for a in addresses[:process_id]])
    sent = INPUTS_SENT.count
    try:
        run = run_flow(recording, out, settings, workers=workers, progress=progress,
                       clock=clock, stop=flag, process_id=process_id, addresses=addresses,
                       weights=weights)
    except Exception as error:  # noqa: BLE001 - classified, then re-raised
        if _address_in_use(error):
            print(f"esg-leads replay: process {process_id}: {addresses[process_id]} is in use",
                  file=sys.stderr, flush=True)
            sys.exit(EX_ADDRESS_IN_USE)
        raise
    failure = run.failure
    share = {
        "process_id": process_id,
        "telemetry": run.telemetry.export(),
        "emitted": run.emitted,
        "inputs_sent": INPUTS_SENT.count - sent,
        "stopped_early": run.stopped_early,
        "seconds": run.seconds,
        "cpu_seconds": _cpu_seconds(),
        "failure": None if failure is None else {
            "path": str(failure.path), "errno": failure.error.errno,
            "message": failure.error.strerror or str(failure.error)},
    }
    path = out / ".parts" / f"process-{process_id}.json"
    partial = path.with_name(f".{path.name}.partial")  # complete when it appears
    partial.write_text(json.dumps(share))
    partial.replace(path)


def _await_listeners(ports: list[int], patience: float = 60.0) -> None:
    """Wait until the lower processes listen on ``ports`` (Linux: ``/proc/net/tcp``).

    Timely connects process ``i`` to every lower process before it binds its own
    port, and retries a refused connection once a second, printing an "error
    connecting ... retrying" line each time. Waiting here for the lower processes'
    listeners instead costs no idle second and prints nothing. Where the table cannot
    be read, or after ``patience`` seconds, timely's own retries take over.
    """
    wanted = {f"0100007F:{port:04X}" for port in ports}
    deadline = time.monotonic() + patience
    while wanted and time.monotonic() < deadline:
        try:
            with open("/proc/net/tcp") as table:
                next(table)  # the header
                # "sl local_address rem_address st ...": st 0A is LISTEN.
                wanted -= {f[1] for f in map(str.split, table) if f[3] == "0A"}
        except (OSError, StopIteration, IndexError):
            return
        if wanted:
            time.sleep(0.02)


def _cpu_seconds() -> float:
    """This process's CPU time so far (user + system, all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _address_in_use(error: BaseException) -> bool:
    text = f"{error} {error.__cause__ or ''}"
    return "Address already in use" in text or "os error 98" in text


def _die_with_parent(parent: int) -> None:
    """Exit when the parent process does: only it can finalize the outputs.

    Not ``PR_SET_PDEATHSIG``: this process's parent is the fork server, which
    outlives the replay's process as long as any of its children (they hold its
    liveness pipe). A daemon thread waits on a pidfd of the replay's process
    (Linux ≥ 5.3) — or, elsewhere, looks once a second — and ends this process.
    """
    try:
        handle: int | None = os.pidfd_open(parent)
    except AttributeError:  # not Linux
        handle = None
    except OSError:  # gone already
        os._exit(1)

    def watch() -> None:
        if handle is not None:
            select.select([handle], [], [])  # readable once the process has exited
        else:
            while _alive(parent):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
