"""Signed webhooks: Parley posts events as ``application/webhook+json`` with an
``Authorization`` JWT (HS256) whose ``sha256`` claim is the base64 SHA-256 of the body, as
LiveKit does. Receivers check it with :func:`verify_webhook`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from ._errors import InvalidTokenError

WEBHOOK_CONTENT_TYPE = "application/webhook+json"


def _body_digest(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(body).digest()).decode()


def sign_webhook(body: bytes, *, key_id: str, secret: str, ttl: timedelta = timedelta(minutes=5)) -> str:
    """Returns the ``Authorization`` header value for a webhook whose body is ``body``."""
    now = datetime.now(UTC)
    claims = {
        "iss": key_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "sha256": _body_digest(body),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_webhook(body: bytes, authorization: str, *, secrets: Mapping[str, str]) -> dict[str, Any]:
    """Checks a webhook's signature and returns its decoded JSON event.

    Args:
        body: The raw request body, exactly as received.
        authorization: The ``Authorization`` header (with or without ``Bearer``).
        secrets: Signing secrets by key id.

    Raises:
        InvalidTokenError: The signature, key, expiry or body digest does not match.
    """
    token = authorization.removeprefix("Bearer ").strip()
    try:
        key_id = jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"malformed webhook signature: {exc}") from exc
    if not isinstance(key_id, str) or key_id not in secrets:
        raise InvalidTokenError("webhook signed by an unknown key")
    try:
        claims = jwt.decode(token, secrets[key_id], algorithms=["HS256"], options={"require": ["exp", "sha256"]})
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"invalid webhook signature: {exc}") from exc
    if not hmac.compare_digest(str(claims["sha256"]), _body_digest(body)):
        raise InvalidTokenError("webhook body does not match its signature")
    event = json.loads(body)
    if not isinstance(event, dict):
        raise InvalidTokenError("webhook body is not a JSON object")
    return event
