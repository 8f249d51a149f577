"""Acting on SIGINT / SIGTERM without doing the work inside the signal handler.

A Python signal handler runs on the main thread, between two bytecodes of whatever it
was doing. ``event.set()`` there takes the lock of the event's condition; if the main
thread was itself inside that event (``Event.wait`` holds the lock for a moment while it
wakes up, ``Event.set`` while it notifies), the handler waits for a lock its own thread
holds, forever. Seen here: ``esg-leads broker`` hung on 1 SIGINT in 300, ``fake-crm``
on SIGTERM; ``run`` (waiting for brokers), ``crm-sync`` (pacing) and ``replay`` (whose
sinks set the same event) had the same shape. Printing or logging from a handler has the
same hazard with the stream's or handler's lock.

So the handler here only writes the signal's number to a pipe, which needs no lock, and
a relay thread calls the callback, where taking locks, printing and logging are safe.

>>> import os, signal, threading
>>> seen = threading.Event()
>>> with on_signals((signal.SIGUSR1,), lambda signum: seen.set()):
...     os.kill(os.getpid(), signal.SIGUSR1)
...     seen.wait(10)
True
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def on_signals(signums: Iterable[int], callback: Callable[[int], None]) -> Iterator[None]:
    """Within the block, ``callback(signum)`` runs on a relay thread for each signal.

    Handlers can only be installed from the main thread; elsewhere the block installs
    nothing (and :class:`KeyboardInterrupt` stays the only way in). On exit the previous
    handlers are back and the relay thread ends.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read, write = os.pipe()
    os.set_blocking(write, False)  # a full pipe drops a signal rather than block the handler

    def handler(signum: int, frame: object) -> None:
        try:
            os.write(write, bytes([signum]))
        except BlockingIOError:  # 64 KB of signals not yet relayed: this one adds nothing
            pass

    def relay() -> None:
        while data := os.read(read, 64):  # b"": the block ended, the write end is closed
            for signum in data:
                try:
                    callback(signum)
                except Exception:  # noqa: BLE001 - the next signal must still be relayed
                    log.exception("handling %s failed", signal.Signals(signum).name)
        os.close(read)

    thread = threading.Thread(target=relay, name="signal-relay", daemon=True)
    thread.start()
    previous = {signum: signal.signal(signum, handler) for signum in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
        os.close(write)  # the relay reads the end of the pipe and stops
        thread.join(10)
