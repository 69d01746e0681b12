"""The small ``filter`` language of list calls: ``field = "value"`` conditions joined by AND."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from ._errors import InvalidArgument

# One condition, then AND or the end; quoted values may contain AND.
_CONDITION = re.compile(r'\s*([a-z_]+)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(AND\s+|$)')


def parse(text: str, fields: Mapping[str, Callable[[str], str]]) -> list[tuple[str, str]]:
    """Parses ``text`` into ``(field, value)`` pairs; ``fields`` maps each allowed field to a
    converter that returns the stored value or raises ValueError."""
    if not text.strip():
        return []
    conditions = []
    position, text = 0, text.strip()
    while position < len(text):
        match = _CONDITION.match(text, position)
        if not match or (not match.group(3) and match.end() != len(text)):
            raise InvalidArgument.field("filter", f'expected field = "value" joined by AND, at {text[position:]!r}')
        position = match.end()
        field, raw = match.group(1), match.group(2).replace('\\"', '"')
        if field not in fields:
            raise InvalidArgument.field("filter", f"cannot filter on {field!r}; use one of {', '.join(fields)}")
        try:
            conditions.append((field, fields[field](raw)))
        except ValueError as exc:
            raise InvalidArgument.field("filter", f"{field}: {exc}") from exc
        if match.group(3) and position == len(text):
            raise InvalidArgument.field("filter", "the filter ends with AND")
    return conditions
