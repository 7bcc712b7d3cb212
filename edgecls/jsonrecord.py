"""Typed JSON records: a frozen dataclass is the one declaration of a JSON format's fields, types and defaults.

`read_record` builds the dataclass from parsed JSON and refuses, naming the field, whatever the declaration does
not allow: a missing or unknown field, a wrong type (a bool is not a number), a non-finite number, a value outside
the field's `choices`. `json_schema` writes the same declaration as JSON Schema for tools outside edgecls. Both read
the type hints, so a field added to a record is checked and documented without a second list to keep in step.

Supported field types: str, int, float, bool, tuple[X, ...], dict (any JSON object), list (any JSON array),
dict[str, Record], a nested record, and `X | None` (optional: may be absent, the default applies).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar

R = TypeVar("R")
_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object", list: "array"}


def choices(values: tuple, doc: str = "") -> dict:
    """Field metadata: the value must be one of `values` (checked, and written to the schema as an enum)."""
    return {"choices": tuple(values), "doc": doc}


def doc(text: str) -> dict:
    return {"doc": text}


def _json_fields(cls) -> list[dataclasses.Field]:
    """The fields JSON holds (`metadata={"json": False}` marks one kept beside them, e.g. the raw document)."""
    return [f for f in dataclasses.fields(cls) if f.init and f.metadata.get("json", True)]


def _optional(hint) -> tuple[Any, bool]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], True
    return hint, False


def read_record(cls: type[R], obj: Any, fail: Callable[[str], Exception], where: str = "") -> R:
    """`obj` (parsed JSON) as a `cls` record; `fail(problem)` makes the exception raised for the first problem."""
    label = where or f"the {cls.__name__.lower()}"
    if not isinstance(obj, dict):
        raise fail(f"{label} must be a JSON object, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _json_fields(cls)}
    required = sorted(
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    )
    missing = [name for name in required if name not in obj]
    unknown = sorted(set(obj) - set(fields))
    if missing:
        raise fail(f"{label} lacks {missing}")
    if unknown:
        raise fail(f"{label} has unknown fields {unknown}")
    values = {}
    for name, value in obj.items():
        path = f"{where}.{name}" if where else name
        values[name] = _read_value(hints[name], value, fail, path)
        allowed = fields[name].metadata.get("choices")
        if allowed and values[name] is not None and values[name] not in allowed:
            raise fail(f"{path} must be one of {list(allowed)}, got {value!r:.40}")
    return cls(**values)


def _read_value(hint, value: Any, fail: Callable[[str], Exception], path: str) -> Any:
    hint, optional = _optional(hint)
    if value is None and optional:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return read_record(hint, value, fail, path)
    if origin is tuple:
        if not isinstance(value, list):
            raise fail(f"{path} must be a list, got {type(value).__name__} {value!r:.40}")
        return tuple(_read_value(args[0], v, fail, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise fail(f"{path} must be an object, got {type(value).__name__}")
        return {k: _read_value(args[1], v, fail, f"{path}[{k!r}]") for k, v in value.items()}
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise fail(f"{path} must be a finite number, got {value!r:.40}")
        return float(value)
    if hint is Any:
        return value
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise fail(f"{path} must be {hint.__name__}, got {type(value).__name__} {value!r:.40}")
    return value


def to_json(record) -> dict:
    """The record as the JSON object `read_record` reads back (tuples as lists, None fields left out)."""
    out = {}
    for f in _json_fields(record):
        value = getattr(record, f.name)
        if value is not None:
            out[f.name] = _to_json_value(value)
    return out


def _to_json_value(value):
    if dataclasses.is_dataclass(value):
        return to_json(value)
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_json_value(v) for k, v in value.items()}
    return value


def json_schema(cls: type, title: str = "", description: str = "") -> dict:
    """JSON Schema (draft 2020-12) of a record: closed objects, required fields, types, enums, descriptions."""
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **_object_schema(cls)}
    if title:
        schema["title"] = title
    if description:
        schema["description"] = description
    return schema


def _object_schema(cls: type) -> dict:
    hints = typing.get_type_hints(cls)
    properties, required = {}, []
    for f in _json_fields(cls):
        hint, optional = _optional(hints[f.name])
        prop = _value_schema(hint)
        if f.metadata.get("choices"):
            prop["enum"] = list(f.metadata["choices"])
        if optional:  # may be absent, or null
            prop = {"anyOf": [prop, {"type": "null"}]}
        if f.metadata.get("doc"):
            prop["description"] = f.metadata["doc"]
        if f.default is not dataclasses.MISSING and f.default is not None:
            prop["default"] = _to_json_value(f.default)
        properties[f.name] = prop
        if not optional and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    schema = {"type": "object", "properties": properties, "required": required, "additionalProperties": False}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def _value_schema(hint) -> dict:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _object_schema(hint)
    if origin is tuple:
        return {"type": "array", "items": _value_schema(args[0])}
    if origin is dict:
        return {"type": "object", "additionalProperties": _value_schema(args[1])}
    if hint is Any:
        return {}
    return {"type": _JSON_TYPES[hint]}
