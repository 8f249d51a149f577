"""Compact pickled forms for the items that cross processes between keyed steps.

In a cluster of several processes bytewax pickles every item a keyed step sends
to a worker of another process (and the snapshots it writes). Pickled as it is, an
:class:`~schemas.records.Ingested` — every valid input event crosses on its way to
the intake — costs ~200 µs to dump and load (measured on the bench world's events:
pydantic's ``__getstate__``/``__setstate__`` of the event and its nested models and
zoned datetimes), which made a third of a two-process replay's CPU. Its compact
form is the message itself (topic, partition, offset, timestamp, key, value), and
the receiver decodes the value again (~37 µs): the event *is* the decoded value —
:meth:`operators.validation.Parser.parse` builds it with
:func:`schemas.codec.decode_event` from these very bytes, and input models are
frozen — so the rebuilt item equals the sent one.

Registered in :mod:`copyreg`'s dispatch table, which :mod:`pickle` consults before
an object's own ``__reduce_ex__``; importing this module (the flow does) is all it
takes. An ``Ingested`` whose value is missing, or whose event is not of its topic's
input model, is pickled as before, and so is every ``Ingested`` in a snapshot
(:func:`durable_dumps`).

>>> import pickle
>>> from esg_leads.schemas.codec import decode_event
>>> value = (b'{"schema_version":1,"event_id":"e1","tenant":"acme","investor_id":"inv-1",'
...          b'"event_time":"2026-01-05T00:00:00Z","source":"crm"}')
>>> event = decode_event("investor.erasure", value)
>>> item = Ingested(event, "investor.erasure", 0, 7, 1_767_571_200_000, b"inv-1", value)
>>> compact = pickle.dumps(item)
>>> pickle.loads(compact) == item, len(compact) < len(pickle.dumps(tuple(item)))
(True, True)
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
from typing import Any

from esg_leads.schemas.codec import decode_event
from esg_leads.schemas.records import Ingested
from esg_leads.schemas.topics import INPUT_TOPICS


def _rebuild_ingested(topic: str, partition: int, offset: int, timestamp_ms: int,
                      key: bytes | None, value: bytes) -> Ingested:
    return Ingested(decode_event(topic, value), topic, partition, offset, timestamp_ms, key,
                    value)


class _Sent:
    """How many input events this process pickled to send to another: an ``Ingested``
    is pickled only to cross processes (snapshots go through :func:`durable_dumps`),
    so a replay whose workers read their own tenants' input (:mod:`flows.reading`)
    keeps it at 0. Reported per process in a cluster replay's summary."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()  # workers of one process pickle concurrently

    def add(self) -> None:
        with self._lock:
            self.count += 1


INPUTS_SENT = _Sent()


def _reduce_ingested(item: Ingested) -> tuple[Any, tuple]:
    INPUTS_SENT.add()
    spec = INPUT_TOPICS.get(item.topic)
    if item.value is None or spec is None or type(item.event) is not spec.model:
        return Ingested, tuple(item)  # as pickle would without this module
    return _rebuild_ingested, (item.topic, item.partition, item.offset, item.timestamp_ms,
                               item.key, item.value)


copyreg.pickle(Ingested, _reduce_ingested)


def durable_dumps(value: Any) -> bytes:
    """``pickle.dumps(value)`` without the compact forms: for snapshots, which a later
    version of the code may resume (its input models could decode the same bytes
    differently, or not at all), while an exchanged item is loaded by the same code."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _DURABLE
    pickler.dump(value)
    return buffer.getvalue()


_DURABLE = {k: v for k, v in copyreg.dispatch_table.items() if k is not Ingested}

__all__ = ["INPUTS_SENT", "durable_dumps"]
