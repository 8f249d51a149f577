"""Arrow types derived from the output topics' pydantic models, and the two conversions.

A replay's Parquet files keep each record as a struct column whose fields are the
topic model's (:mod:`schemas.outputs`): DuckDB, pandas or Spark query
``record.explanation.top_positive`` directly, and a field added to a model appears
in the files without touching this module. The mapping:

* a model → a struct of its fields, in declaration order;
* ``str``, enums, ``Literal`` strings → string; ``int`` → int64; ``float`` → float64;
  ``bool`` → bool; datetimes → ``timestamp[us, UTC]`` (instants, normalized to UTC);
* ``list[X]`` → list of X; ``dict[K, V]`` → map of string to V;
* ``X | None`` → X, nullable (every Arrow field is);
* any other union (``float | str``) → a string holding the value's JSON, marked with the
  field metadata ``{"json": "1"}``: Arrow has no column type that keeps both.

:func:`from_arrow` turns a read struct back into the record a Kafka consumer would
decode from the topic (``orjson.loads`` of the published JSON), timestamps as ISO
strings the way the flow's encoder writes them.

>>> from pydantic import BaseModel
>>> from datetime import datetime
>>> class Row(BaseModel):
...     at: datetime
...     tags: list[str]
...     extra: dict[str, float | str]
...     note: str | None = None
>>> t = arrow_type(Row)
>>> [f"{f.name}: {f.type}" for f in t]
['at: timestamp[us, tz=UTC]', 'tags: list<item: string>', 'extra: string', 'note: string']
>>> to_arrow(t)({"at": "2026-01-02T03:04:05+01:00", "tags": ["a"], "extra": {"n": 1}})["extra"]
'{"n":1}'
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from datetime import date, datetime, timezone
from enum import Enum
from typing import Annotated, Any, Literal, Union

import orjson
import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, NaiveDatetime

TIMESTAMP = pa.timestamp("us", tz="UTC")
#: Field metadata marking a string that holds a JSON value (a union Arrow cannot type).
JSON_METADATA = {b"json": b"1"}

Convert = Callable[[Any], Any]


def arrow_type(model: type[BaseModel]) -> pa.StructType:
    """The struct type of ``model``'s records (see the module docstring)."""
    return pa.struct([_field(name, info.annotation) for name, info in model.model_fields.items()])


def _field(name: str, annotation: Any) -> pa.Field:
    kind = _type(annotation)
    if kind is None:  # a union Arrow cannot hold: its JSON
        return pa.field(name, pa.string(), metadata=JSON_METADATA)
    return pa.field(name, kind)


def _type(annotation: Any) -> pa.DataType | None:
    """Arrow type of ``annotation``; ``None`` for a value kept as JSON text."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _type(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _type(members[0]) if len(members) == 1 else None
    if origin is Literal:
        values = typing.get_args(annotation)
        if all(isinstance(v, bool) for v in values):
            return pa.bool_()
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return pa.int64()
        if all(isinstance(v, str) for v in values):
            return pa.string()
        return None
    if origin is list:
        item = _type(typing.get_args(annotation)[0])
        return pa.list_(item if item is not None else pa.string())
    if origin is dict:
        value = _type(typing.get_args(annotation)[1])
        return pa.map_(pa.string(), value) if value is not None else None
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return arrow_type(annotation)
        if issubclass(annotation, Enum) or issubclass(annotation, str):
            return pa.string()
        if issubclass(annotation, bool):
            return pa.bool_()
        if issubclass(annotation, int):
            return pa.int64()
        if issubclass(annotation, float):
            return pa.float64()
        if issubclass(annotation, datetime):
            return TIMESTAMP
        if issubclass(annotation, date):
            return pa.date32()
    if annotation in (AwareDatetime, NaiveDatetime):
        return TIMESTAMP
    raise TypeError(f"no Arrow type for {annotation!r}: extend connectors/arrow_schema.py")


def _is_json(field: pa.Field) -> bool:
    return field.metadata is not None and field.metadata.get(b"json") == b"1"


def _instant(value: Any) -> Any:
    # Records carry datetimes; a record decoded from JSON carries ISO strings.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _json_text(value: Any) -> Any:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def to_arrow(kind: pa.DataType) -> Convert:
    """A function making a record (dict) of struct type ``kind`` ready for ``pa.array``."""
    return _to(kind) or (lambda value: value)


def array_of(kind: pa.StructType) -> Callable[[list], pa.Array]:
    """A function turning records of struct type ``kind`` into an array: the same array
    as ``pa.array([to_arrow(kind)(r) for r in records], kind)``.

    A record made by the flow holds datetimes, not ISO strings: unless ``kind`` has a
    field kept as JSON, ``to_arrow`` changes no value of it and only copied every dict
    holding a timestamp (a fifth of converting a lead, issue 16). So the records go to
    pyarrow as they are, and through ``to_arrow`` only when pyarrow refuses a string
    where an instant belongs (a record decoded from JSON).

    >>> t = pa.struct([("at", TIMESTAMP), ("n", pa.int64())])
    >>> rows = [{"at": "2026-01-02T03:04:05+01:00", "n": 1}]
    >>> array_of(t)(rows).equals(pa.array([to_arrow(t)(r) for r in rows], t))
    True
    >>> array_of(t)(rows)[0]["at"].as_py().isoformat()
    '2026-01-02T02:04:05+00:00'
    """
    prepare = to_arrow(kind)

    def converted(records: list) -> pa.Array:
        return pa.array([prepare(r) for r in records], kind)

    if _holds_json(kind):
        return converted

    def direct(records: list) -> pa.Array:
        try:
            return pa.array(records, kind)
        except pa.ArrowTypeError:  # an ISO string for an instant
            return converted(records)
    return direct


def _holds_json(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return any(_is_json(f) or _holds_json(f.type) for f in kind)
    if pa.types.is_map(kind):
        return _holds_json(kind.item_type)
    if pa.types.is_list(kind):
        return _holds_json(kind.value_type)
    return False


def _to(kind: pa.DataType) -> Convert | None:
    """The conversion for values of ``kind``; ``None`` where pyarrow takes them as they are."""
    if pa.types.is_timestamp(kind):
        return _instant
    if pa.types.is_struct(kind):
        steps = {}
        for field in kind:
            step = _json_text if _is_json(field) else _to(field.type)
            if step is not None:
                steps[field.name] = step
        if not steps:
            return None

        def struct(value: Any) -> Any:
            if value is None:
                return None
            out = dict(value)
            for name, step in steps.items():
                if out.get(name) is not None:
                    out[name] = step(out[name])
            return out
        return struct
    if pa.types.is_map(kind):
        item = _to(kind.item_type)
        if item is None:
            return None
        return lambda value: None if value is None else {k: item(v) if v is not None else None
                                                         for k, v in value.items()}
    if pa.types.is_list(kind):
        item = _to(kind.value_type)
        if item is None:
            return None
        return lambda value: None if value is None else [item(v) if v is not None else None
                                                         for v in value]
    return None


def from_arrow(kind: pa.DataType) -> Convert:
    """A function turning a read value of ``kind`` (``to_pylist``) back into JSON values."""
    if pa.types.is_timestamp(kind):
        return lambda value: None if value is None else value.astimezone(timezone.utc).isoformat()
    if pa.types.is_struct(kind):
        steps = [(f.name, (lambda v: None if v is None else orjson.loads(v)) if _is_json(f)
                  else from_arrow(f.type)) for f in kind]
        return lambda value: None if value is None else {n: step(value[n]) for n, step in steps}
    if pa.types.is_map(kind):
        item = from_arrow(kind.item_type)
        return lambda value: None if value is None else {k: item(v) for k, v in value}
    if pa.types.is_list(kind):
        item = from_arrow(kind.value_type)
        return lambda value: None if value is None else [item(v) for v in value]
    if pa.types.is_date(kind):
        return lambda value: None if value is None else value.isoformat()
    return lambda value: value
