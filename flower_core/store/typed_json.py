"""Frozen dataclasses read from JSON, each value checked against the field's own annotation.

A run file is written by one process and read by others, perhaps of another version or after a
hand edit, so every value is checked once, where it is read: its type as the field declares it,
and every number finite (Python's `json` writes and reads NaN and Infinity, which no reader
expects). A file that fails names the field and what was wrong, in one line.

Annotations understood: `str`, `int`, `float` (an int is taken as a float), `bool`, `X | None`,
`tuple[X, ...]`, `list[X]`, `dict[str, X]` and nested `JsonRecord`s. A field with a default may
be absent (older files lack newer fields); `None` is accepted only where the annotation allows it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Self

from flower_core.errors import FlowerError


class WrongValue(ValueError):
    """A value that does not match its annotation, with the dotted path to it."""

    def __init__(self, where: str, problem: str):
        super().__init__(f"'{where}' {problem}")


def corrupt(source: str | Path, problem: str) -> FlowerError:
    """The one-line error for a file whose content is wrong."""
    return FlowerError(f"corrupt run file {source}: {problem}")


@dataclasses.dataclass(frozen=True)
class JsonRecord:
    """Base of the frozen dataclasses read from JSON (`from_json`) and written back (`to_json`)."""

    @classmethod
    def from_json(cls, data: Any, source: str | Path) -> Self:
        """The record held by `data` (one file's parsed JSON), checked field by field.

        Raises:
            FlowerError: `corrupt run file <source>: '<field>' should be ...` (one line).
        """
        if not isinstance(data, dict):
            raise corrupt(source, f"expected a JSON object, found {type(data).__name__}")
        try:
            return cls.build(data, "")
        except WrongValue as error:
            raise corrupt(source, str(error)) from None

    @classmethod
    def build(cls, data: dict, prefix: str) -> Self:
        """The record from a JSON object, or `WrongValue` naming the field as `prefix` + name."""
        record = cls(**fields_from(cls, data, prefix))
        problem = record.problem()
        if problem:
            raise WrongValue(prefix + problem[0], problem[1])
        return record

    def problem(self) -> tuple[str, str] | None:
        """What is wrong across fields, as (field, problem), or `None`; a subclass may check more."""
        return None

    def to_json(self) -> dict:
        """The record as JSON-ready data; fields holding `None` are left out, as older files do."""
        return {
            field.name: _plain(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if getattr(self, field.name) is not None
        }


def fields_from(cls: type, data: dict, prefix: str = "", hints: dict | None = None, skip=()) -> dict:
    """The values of dataclass `cls`'s fields found in `data`, each checked against its annotation
    (`hints`, else the class's own); a field without a default must be there.

    Raises:
        WrongValue: naming the first field that is missing or wrong.
    """
    hints = _hints(cls) if hints is None else hints
    values = {}
    for field in dataclasses.fields(cls):
        where = prefix + field.name
        if field.name in skip:
            continue
        if field.name in data:
            values[field.name] = checked(data[field.name], hints[field.name], where)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise WrongValue(where, "is missing")
    return values


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def checked(value: Any, hint: Any, where: str) -> Any:
    """`value` as annotated by `hint` (tuples for `tuple[X, ...]`, floats for `float`).

    Raises:
        WrongValue: naming `where`, the expected kind and what was found.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        [inner] = [arg for arg in args if arg is not type(None)]
        return checked(value, inner, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _wrong(where, "a number", value)
        if not math.isfinite(value):
            raise _wrong(where, "a finite number", value)
        return float(value)
    if hint in (str, int, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise _wrong(where, _KIND_NAMES[hint], value)
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise _wrong(where, "a list", value)
        items = [checked(item, args[0], f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        return {key: checked(item, args[1], f"{where}.{key}") for key, item in value.items()}
    if isinstance(hint, type) and issubclass(hint, JsonRecord):
        if not isinstance(value, dict):
            raise _wrong(where, "an object", value)
        return hint.build(value, f"{where}.")
    raise TypeError(f"no JSON check for the annotation {hint!r} of {where}")


_KIND_NAMES = {str: "text", int: "an integer", bool: "true or false"}


def _wrong(where: str, expected: str, value: Any) -> WrongValue:
    shown = json.dumps(value)
    shown = shown if len(shown) <= 40 else f"{shown[:39]}…"
    return WrongValue(where, f"should be {expected}, found {type(value).__name__} {shown}")


def _plain(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
