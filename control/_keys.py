"""API keys: authenticating them, and creating, listing and revoking them (with an API key
holding ``keys:manage``, or as the operator: ``caller`` None, ``python -m control keys``)."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Sequence

from parley.server import decode_page_token
from parley.server import page_size as page_size_of

from . import _policy
from ._auth import API_KEY_PREFIX, Principal, hash_secret
from ._domain import Page, UseCases, page_of, utcnow
from ._errors import InvalidArgument, NotFound, Unauthenticated
from ._models import ApiKeyRow
from ._repos import ApiKeys


class ApiKeyUseCases(UseCases):
    async def authenticate_api_key(self, key_id: str, secret: str) -> Principal:
        async with self._reads() as session:
            row = await ApiKeys(session).get(key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(kind="api_key", api_key_id=row.id, display_name=row.display_name, scopes=frozenset(row.scopes))

    async def create_api_key(
        self, caller: Principal | None, display_name: str, scopes: Sequence[str]
    ) -> tuple[ApiKeyRow, str]:
        """Creates a key; ``caller`` None is the operator bootstrapping the first key."""
        if caller is not None:
            _policy.require_key_manager(caller)
        if not scopes:
            raise InvalidArgument.field("api_key.scopes", "give the key at least one scope")
        secret = "sk_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=API_KEY_PREFIX + secrets.token_hex(12),
            secret_hash=hash_secret(secret),
            display_name=display_name.strip(),
            scopes=list(scopes),
            created_at=utcnow(),
        )
        async with self._writes.begin() as session:
            ApiKeys(session).add(row)
        return row, secret

    async def list_api_keys(self, caller: Principal | None, *, page_size: int, page_token: str) -> Page[ApiKeyRow]:
        """Lists keys; ``caller`` None is the operator (``python -m control keys list``)."""
        if caller is not None:
            _policy.require_key_manager(caller)
        size = page_size_of(page_size)
        async with self._reads() as session:
            rows = await ApiKeys(session).page(after=decode_page_token(page_token, scope="keys"), limit=size + 1)
        return page_of(rows, size, "keys")

    async def delete_api_key(self, caller: Principal | None, key_id: str) -> None:
        """Deletes a key; ``caller`` None is the operator (``python -m control keys revoke``)."""
        if caller is not None:
            _policy.require_key_manager(caller)
        async with self._writes.begin() as session:
            keys = ApiKeys(session)
            row = await keys.get(key_id)
            if row is None:
                raise NotFound(f"API key {key_id} not found")
            await keys.delete(row)
