"""Who is calling: API keys, OIDC tokens (checked against the provider's JWKS), dev-login
tokens (embedded default only), or nobody (anonymous)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import jwt

from ._errors import PermissionDenied, Unauthenticated
from ._settings import ControlSettings, OidcSettings

log = logging.getLogger(__name__)

DEV_LOGIN_ISSUER = "parley-dev-login"
API_KEY_PREFIX = "pk_"


@dataclass(frozen=True, kw_only=True)
class Identity:
    """A person vouched for by a token: the claims control keeps about them."""

    subject: str
    email: str = ""
    display_name: str = ""


@dataclass(frozen=True, kw_only=True)
class Principal:
    """The caller of one RPC."""

    kind: Literal["anonymous", "user", "api_key"]
    #: For ``user``: the users-table id and display name (resolved after authentication).
    user_id: str = ""
    display_name: str = ""
    identity: Identity | None = None
    #: For ``api_key``: the key id and its scopes.
    api_key_id: str = ""
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_user(self) -> bool:
        return self.kind == "user"

    @property
    def is_api_key(self) -> bool:
        return self.kind == "api_key"

    def require_user(self) -> str:
        """The caller's user id; anonymous callers and API keys are refused."""
        if self.kind == "anonymous":
            raise Unauthenticated("log in first: this call needs a user")
        if self.kind != "user":
            raise PermissionDenied("this call is for users, not API keys")
        return self.user_id

    def require_scope(self, scope: str) -> None:
        """For API keys: refuses unless the key holds ``scope``."""
        if self.kind == "api_key" and scope not in self.scopes:
            raise PermissionDenied(f"the API key lacks the {scope!r} scope")

    def require_authenticated(self) -> None:
        if self.kind == "anonymous":
            raise Unauthenticated("credentials required")


ANONYMOUS = Principal(kind="anonymous")


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def dev_login_key(token_secret: str) -> bytes:
    """A key for dev-login tokens derived from the token secret, so the two never mix."""
    return hmac.new(token_secret.encode(), b"parley dev login", hashlib.sha256).digest()


def issue_dev_token(settings: ControlSettings, identity: Identity, *, ttl: timedelta) -> tuple[str, datetime]:
    expires = datetime.now(UTC).replace(microsecond=0) + ttl
    claims = {
        "iss": DEV_LOGIN_ISSUER,
        "sub": identity.subject,
        "email": identity.email,
        "name": identity.display_name,
        "exp": int(expires.timestamp()),
    }
    return jwt.encode(claims, dev_login_key(settings.token_secret), algorithm="HS256"), expires


class OidcVerifier:
    """Checks RS256/ES256 tokens from one OIDC provider: signature against its JWKS (fetched
    from the discovery document, cached, refreshed at most every 30 s on an unknown key id),
    issuer, audience and expiry."""

    _REFRESH_EVERY = 30.0

    def __init__(self, settings: OidcSettings, *, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._http = http or httpx.AsyncClient(timeout=10)
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    @property
    def issuer(self) -> str:
        return self._settings.issuer

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._fetched_at < self._REFRESH_EVERY and self._keys:
                return
            discovery_url = self._settings.issuer.rstrip("/") + "/.well-known/openid-configuration"
            discovery = (await self._http.get(discovery_url)).raise_for_status().json()
            jwks = (await self._http.get(discovery["jwks_uri"])).raise_for_status().json()
            self._keys = {}
            for key in jwks.get("keys", []):
                if "kid" not in key or key.get("use", "sig") != "sig":
                    continue
                try:
                    self._keys[key["kid"]] = jwt.PyJWK(key)
                except jwt.PyJWTError as exc:  # e.g. an encryption key without "use": not ours to use
                    log.info("skipping key %s of %s: %s", key["kid"], self._settings.issuer, exc)
            self._fetched_at = time.monotonic()
            log.info("fetched %d signing keys from %s", len(self._keys), self._settings.issuer)

    async def verify(self, token: str) -> Identity:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"malformed token: {exc}") from exc
        if kid not in self._keys:
            try:
                await self._refresh()
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                log.warning("cannot fetch the JWKS of %s: %s", self._settings.issuer, exc)
                raise Unauthenticated("the identity provider cannot be reached to check the token") from exc
        key = self._keys.get(str(kid))
        if key is None:
            raise Unauthenticated("token signed by an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256", "ES256", "PS256"],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options={"require": ["exp", "iss", "sub"]},
                leeway=self._settings.leeway,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthenticated("token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthenticated("token was issued for another audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthenticated("token was issued by another provider") from exc
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        return Identity(
            subject=str(claims["sub"]), email=str(claims.get("email", "")), display_name=str(claims.get("name", ""))
        )


def parse_bearer(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise Unauthenticated("use the authorization header 'Bearer <token>'")
    return credentials.strip()


def verify_dev_token(settings: ControlSettings, token: str) -> Identity:
    if not settings.dev_login:
        raise Unauthenticated("dev login is disabled on this server")
    try:
        claims = jwt.decode(
            token,
            dev_login_key(settings.token_secret),
            algorithms=["HS256"],
            issuer=DEV_LOGIN_ISSUER,
            options={"require": ["exp", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid dev-login token: {exc}") from exc
    return Identity(
        subject=str(claims["sub"]), email=str(claims.get("email", "")), display_name=str(claims.get("name", ""))
    )


def token_issuer(token: str) -> str:
    try:
        return str(jwt.decode(token, options={"verify_signature": False}).get("iss", ""))
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"malformed token: {exc}") from exc
