"""Opaque ``page_token``s for keyset pagination on (created_at, id), shared by every service.

A token is bound to the query it came from (``scope``: the list, its filter, its caller), kept
only as a short hash so that no owner id or filter is readable in it; reusing it with another
filter or caller is an INVALID_ARGUMENT, not a silently wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime

from ._errors import InvalidArgument

__all__ = ["DEFAULT_PAGE_SIZE", "decode_page_token", "encode_page_token", "page_size"]

DEFAULT_PAGE_SIZE = 50


def page_size(requested: int) -> int:
    """The page size to serve: the requested one, or the default for 0."""
    return requested or DEFAULT_PAGE_SIZE


def _fingerprint(scope: str) -> str:
    return hashlib.sha256(scope.encode()).hexdigest()[:16]


def encode_page_token(created_at: datetime, row_id: str, *, scope: str) -> str:
    payload = {"c": created_at.isoformat(), "i": row_id, "s": _fingerprint(scope)}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_page_token(token: str, *, scope: str) -> tuple[datetime, str] | None:
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
