"""The small ``filter`` language of list calls: ``field = "value"`` conditions joined by AND."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ._errors import InvalidArgument

_CONDITION = re.compile(r'^\s*([a-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*$')


def parse(text: str, fields: Mapping[str, Callable[[str], str]]) -> list[tuple[str, str]]:
    """Parses ``text`` into ``(field, value)`` pairs; ``fields`` maps each allowed field to a
    converter that returns the stored value or raises ValueError."""
    if not text.strip():
        return []
    conditions = []
    for part in re.split(r"\s+AND\s+", text.strip()):
        match = _CONDITION.match(part)
        if not match:
            raise InvalidArgument.field("filter", f'expected field = "value" joined by AND, got {part.strip()!r}')
        field, raw = match.group(1), match.group(2).replace('\\"', '"')
        if field not in fields:
            raise InvalidArgument.field("filter", f"cannot filter on {field!r}; use one of {', '.join(fields)}")
        try:
            conditions.append((field, fields[field](raw)))
        except ValueError as exc:
            raise InvalidArgument.field("filter", f"{field}: {exc}") from exc
    return conditions
