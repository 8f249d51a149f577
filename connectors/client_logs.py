"""librdkafka's own log lines, through Python logging, at most one per back-off step.

Left alone, every librdkafka client writes its log lines straight to stderr: with the
broker unreachable, the run's consumer and its six producers each log a ``FAIL`` line
per reconnect attempt, about 16 lines a second between them. :func:`with_logging`
routes a client's lines to the ``esg_leads.kafka`` logger instead (``logger`` client
setting; the lines are then served by the client's own ``poll``/``consume``), where a
:class:`BackoffFilter` lets the first line of a kind through and then at most one per
back-off step (0.5 s, 1 s, 2 s, ... up to 30 s: the steps ``esg-leads run`` waits
between its own start-up attempts), each carrying how many like it it stood for. A
kind is librdkafka's facility (``FAIL``, ``ERROR``, ...) at one level: the same
trouble seen by seven clients is one stream of lines, not seven.

>>> clock = iter([0.0, 0.1, 0.4, 0.6, 0.7, 1.7, 100.0]).__next__
>>> throttle = BackoffThrottle(initial=0.5, maximum=30, clock=clock)
>>> [throttle.allow("FAIL") for _ in range(7)]  # None: suppressed; n: lines it stands for
[0, None, None, 2, None, 1, 0]
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

#: Where librdkafka's lines go (Python's logging configuration decides what is shown).
KAFKA_LOG = logging.getLogger("esg_leads.kafka")


class BackoffThrottle:
    """Per key: the first line, then at most one per back-off step (doubling, capped).

    A key quiet for longer than ``maximum`` starts again at ``initial``. ``allow``
    returns ``None`` for a line to drop, else how many lines were dropped since the
    last one let through. Thread-safe: librdkafka's lines are served on whichever
    thread polls the client.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.maximum = maximum
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> [next allowed time, current step, lines dropped, last line's time]
        self._state: dict[object, list] = {}

    def allow(self, key: object) -> int | None:
        now = self._clock()
        with self._lock:
            state = self._state.get(key)
            if state is None or now - state[3] > self.maximum:  # new, or quiet for long
                dropped = state[2] if state is not None else 0
                self._state[key] = [now + self.initial, self.initial, 0, now]
                return dropped
            state[3] = now
            if now < state[0]:
                state[2] += 1
                return None
            dropped, state[2] = state[2], 0
            state[1] = min(self.maximum, state[1] * 2)
            state[0] = now + state[1]
            return dropped


class BackoffFilter(logging.Filter):
    """A logging filter applying :class:`BackoffThrottle` to librdkafka's records.

    confluent-kafka logs ``logger.log(level, "%s [%s] %s", facility, client, text)``;
    the facility and level are the throttle's key.
    """

    def __init__(self, throttle: BackoffThrottle | None = None) -> None:
        super().__init__()
        self.throttle = throttle if throttle is not None else BackoffThrottle()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        facility = args[0] if args and isinstance(args[0], str) else str(record.msg)[:40]
        dropped = self.throttle.allow((record.levelno, facility))
        if dropped is None:
            return False
        if dropped:
            record.msg = f"{record.msg} (and {dropped} more like it since the last such line)"
        return True


_FILTER = BackoffFilter()
KAFKA_LOG.addFilter(_FILTER)


def with_logging(config: dict) -> dict:
    """``config`` with librdkafka's log lines routed to :data:`KAFKA_LOG` (throttled).

    A ``logger`` the caller set already is kept.
    """
    return {"logger": KAFKA_LOG, **config}


def quiet(config: dict) -> dict:
    """``config`` for a probe whose caller reports failures itself: no log lines at all
    (librdkafka's ``log_level`` 0 keeps only emergencies)."""
    return {**config, "log_level": 0}
