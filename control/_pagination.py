"""Opaque ``page_token``s for keyset pagination on (created_at, id).

A token is bound to the query it came from (``scope``): reusing it with another filter or
caller is an INVALID_ARGUMENT, not a silently wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime

from ._errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50


def page_size(requested: int) -> int:
    return requested or DEFAULT_PAGE_SIZE


def _fingerprint(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode(created_at: datetime, row_id: str, *, scope: str) -> str:
    payload = {"c": created_at.isoformat(), "i": row_id, "s": _fingerprint(scope)}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode(token: str, *, scope: str) -> tuple[datetime, str] | None:
    """The position after which the next page starts; ``None`` for the first page."""
    if not token:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        position = datetime.fromisoformat(payload["c"]), str(payload["i"])
        matches = payload["s"] == _fingerprint(scope)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument.field("page_token", "not a page token of this list") from exc
    if not matches:
        raise InvalidArgument.field("page_token", "the token belongs to another query (filter or caller changed)")
    return position
