"""``on_signals``: signal work on a relay thread, never inside the handler."""

from __future__ import annotations

import os
import signal
import threading

from esg_leads.connectors.signals import on_signals


def test_a_signal_runs_the_callback_on_another_thread_with_its_number() -> None:
    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def callback(signum: int) -> None:
        seen.append((signum, threading.current_thread().name))
        done.set()

    with on_signals((signal.SIGUSR1, signal.SIGUSR2), callback):
        os.kill(os.getpid(), signal.SIGUSR2)
        assert done.wait(10)
    assert seen == [(signal.SIGUSR2, "signal-relay")]


def test_the_handler_takes_no_lock_its_own_thread_may_hold() -> None:
    """The deadlock this exists for: ``Event.wait`` holds its condition's lock while it
    wakes; a handler calling ``event.set()`` at that moment waits for its own thread. Here
    the handler is called by a thread holding that lock: it must return, and the event
    is set once the lock is free. (``lambda *_: stop.set()`` never returns here.)"""
    stop = threading.Event()
    returned = threading.Event()
    with on_signals((signal.SIGUSR1,), lambda _: stop.set()):
        handler = signal.getsignal(signal.SIGUSR1)

        def woken_mid_wait() -> None:
            with stop._cond:  # what Event.wait holds while it wakes up
                handler(signal.SIGUSR1, None)
                returned.set()

        holder = threading.Thread(target=woken_mid_wait, daemon=True)
        holder.start()
        holder.join(10)
        assert returned.is_set(), "the handler waited for a lock its own thread held"
        assert stop.wait(10)


def test_the_previous_handlers_are_back_and_the_relay_ends() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    with on_signals((signal.SIGUSR1,), lambda _: None):
        assert signal.getsignal(signal.SIGUSR1) is not before
        relays = [t for t in threading.enumerate() if t.name == "signal-relay"]
        assert relays
    assert signal.getsignal(signal.SIGUSR1) is before
    assert not any(t.is_alive() for t in relays)


def test_off_the_main_thread_nothing_is_installed() -> None:
    before = signal.getsignal(signal.SIGUSR1)
    inside: list[object] = []

    def elsewhere() -> None:
        with on_signals((signal.SIGUSR1,), lambda _: None):
            inside.append(signal.getsignal(signal.SIGUSR1))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert inside == [before]


def test_a_callback_that_raises_does_not_stop_the_next_signal() -> None:
    calls: list[int] = []
    second = threading.Event()

    def callback(signum: int) -> None:
        calls.append(signum)
        if len(calls) == 1:
            raise BrokenPipeError("stderr is gone")
        second.set()

    with on_signals((signal.SIGUSR1,), callback):
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert second.wait(10)
    assert calls == [signal.SIGUSR1] * 2
