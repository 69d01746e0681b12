"""One settings loader for every service: an explicit argument, else an environment variable,
else the field's default, else a clear error; loaded once into a frozen dataclass.

Every field of a settings class is read from one variable, ``<prefix><FIELD>`` unless the
service names another (``names``) or reads it from several (``readers``); ``variables()`` lists
them, for documentation and for the test that proves no field is left out.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["ConfigurationError", "EnvSpec", "parse_value"]

S = TypeVar("S", bound="DataclassInstance")


class ConfigurationError(ValueError):
    """A setting is missing or malformed; the message says which and how to set it."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"not a boolean: {raw!r} (use true or false)")


def _mapping(raw: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in raw.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"expected name=value,name=value, not {raw!r}")
    return {name.strip(): value.strip() for name, value in pairs}


def parse_value(kind: Any, raw: str) -> object:
    """``raw`` as a value of the annotation ``kind``: str, int, float, bool, Path, timedelta
    (seconds), tuple[str, ...] (comma-separated), Mapping[str, str] (``a=1,b=2``), a Literal,
    or ``X | None`` of those."""
    origin = typing.get_origin(kind)
    if origin in (types.UnionType, typing.Union):
        kinds = [k for k in typing.get_args(kind) if k is not type(None)]
        if len(kinds) == 1:
            return parse_value(kinds[0], raw)
    if origin is typing.Literal:
        allowed = typing.get_args(kind)
        if raw not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}, not {raw!r}")
        return raw
    if origin is tuple:
        return tuple(item.strip() for item in raw.split(",") if item.strip())
    if origin in (Mapping, dict, typing.Mapping):
        return _mapping(raw)
    parsers: dict[Any, Callable[[str], object]] = {
        str: str,
        int: int,
        float: float,
        bool: _bool,
        Path: Path,
        timedelta: lambda value: timedelta(seconds=float(value)),
    }
    if kind not in parsers:
        raise TypeError(f"no environment parser for {kind!r}: give the field a reader")
    return parsers[kind](raw)


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """How one settings class is read from the environment.

    Attributes:
        prefix: Variables are ``prefix + FIELD_NAME``.
        names: Fields read from a variable of another name (``{"redis_url": "PARLEY_REDIS_URL"}``).
        readers: Fields built from several variables: ``field -> (variables, reader)``, the main
            variable first; the reader returns ``None`` when none of them is set.
        required: Fields that have a default (for code that builds settings itself) but must
            be given when loading from the environment.
    """

    prefix: str
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)
    readers: Mapping[str, tuple[tuple[str, ...], Callable[[Mapping[str, str]], object | None]]] = dataclasses.field(
        default_factory=dict
    )
    required: tuple[str, ...] = ()

    def variable(self, name: str) -> str:
        return self.names.get(name, self.prefix + name.upper())

    def variables(self, cls: type[DataclassInstance]) -> dict[str, tuple[str, ...]]:
        """Each field of ``cls`` and the variables it is read from."""
        return {
            f.name: self.readers[f.name][0] if f.name in self.readers else (self.variable(f.name),)
            for f in dataclasses.fields(cls)
        }

    def load(self, cls: type[S], env: Mapping[str, str] | None = None, explicit: Mapping[str, object] = {}) -> S:
        """An instance of ``cls``: ``explicit`` values, else the environment, else defaults.
        Raises ConfigurationError naming the variable of a missing or malformed value."""
        env = os.environ if env is None else env
        hints = typing.get_type_hints(cls)
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name in explicit:
                continue
            if f.name in self.readers:
                value = self.readers[f.name][1](env)
                if value is not None:
                    values[f.name] = value
                continue
            var = self.variable(f.name)
            if var in env:
                try:
                    values[f.name] = parse_value(hints[f.name], env[var])
                except ValueError as error:
                    raise ConfigurationError(f"{var}: {error}") from None
        values.update(explicit)
        for f in dataclasses.fields(cls):
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if (no_default or f.name in self.required) and not values.get(f.name):
                where = self.variables(cls)[f.name][0]
                raise ConfigurationError(f"{f.name} is required: pass it or set {where}")
        return cls(**values)
