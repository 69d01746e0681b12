"""Browser login with an OpenID Connect provider: authorization code + PKCE (S256), state and
nonce. The validated ID token becomes the session's bearer token, which control checks again
(JWKS, issuer, audience, expiry) on every call.

HTTP goes through the project's httpx. authlib supplies the PKCE challenge and the ID-token
claim rules (nonce, at_hash, azp, required claims; iss/aud/exp through joserfc, its JOSE
library, which also checks the signature). Not authlib's Starlette client: in 1.9.6 its HTTP
layer deprecates httpx for httpx2 (a warning at import that overrides filterwarnings=error, and
httpx2 exceptions once httpx2 is installed), and by default it does not check ``aud``.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
from typing import Any
from urllib.parse import quote

import grpc
import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge  # type: ignore[import-untyped]
from authlib.oidc.core import CodeIDToken  # type: ignore[import-untyped]
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from parley.control.v1 import user_service_pb2

from ._app import Gateway, safe_next, start_session
from ._settings import OidcClientSettings

log = logging.getLogger(__name__)

#: The login in progress (state, nonce, PKCE verifier, redirect URI, next) in the signed session
#: cookie: one per browser, so a newer login replaces an older one.
_PENDING = "oidc_login"
#: What control accepts: a token the gateway takes must not be one control refuses. Only public
#: key algorithms, since keys come from the public JWKS.
_ALGORITHMS = ["RS256", "ES256", "PS256"]
_LEEWAY_S = 10


class _Refused(Exception):
    """Ends a login with an error page."""

    def __init__(self, status: int, why: str) -> None:
        super().__init__(why)
        self.status = status
        self.why = why


class _Provider:
    """The provider's discovery document and JWKS: fetched on first use, then cached (the JWKS
    again when a token names a key it lacks, i.e. after a key rotation)."""

    def __init__(self, settings: OidcClientSettings) -> None:
        self.settings = settings
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._lock = asyncio.Lock()

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                document = (await http.get(url)).raise_for_status().json()
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except (httpx.HTTPError, ValueError) as error:
            log.warning("cannot fetch %s: %s", url, error)
            raise _Refused(502, "The identity provider cannot be reached. Try again later.") from error
        return document

    async def metadata(self) -> dict[str, Any]:
        async with self._lock:  # one fetch even when the first logins arrive together
            if self._metadata is None:
                document = await self._get_json(self.settings.issuer.rstrip("/") + "/.well-known/openid-configuration")
                if not all(
                    isinstance(document.get(k), str) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")
                ):
                    raise _Refused(502, "The identity provider's discovery document is incomplete.")
                self._metadata = document
            return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        jwks_uri = (await self.metadata())["jwks_uri"]
        async with self._lock:
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(await self._get_json(jwks_uri))  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError) as error:
                    raise _Refused(502, f"The identity provider's keys are not usable ({error}).") from error
            return self._keys

    async def redeem(self, code: str, pending: dict[str, str]) -> dict[str, Any]:
        """The token endpoint's answer for ``code``, sent with the login's PKCE verifier."""
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": pending["redirect_uri"],
            "code_verifier": pending["verifier"],
        }
        settings = self.settings
        # client_secret_basic form-encodes id and secret (RFC 6749 2.3.1); a public client
        # (no secret) names itself in the body and relies on PKCE alone.
        auth = None
        if settings.client_secret:
            auth = httpx.BasicAuth(quote(settings.client_id, safe=""), quote(settings.client_secret, safe=""))
        else:
            data["client_id"] = settings.client_id
        try:
            async with httpx.AsyncClient(timeout=10, auth=auth) as http:
                reply = await http.post((await self.metadata())["token_endpoint"], data=data)
        except httpx.HTTPError as error:
            raise _Refused(502, "The identity provider cannot be reached. Try again later.") from error
        try:
            body = reply.json()
        except ValueError:
            body = None
        if reply.status_code >= 500 or not isinstance(body, dict):
            raise _Refused(502, f"The identity provider failed to redeem the code (HTTP {reply.status_code}).")
        if reply.status_code != 200:
            # invalid_grant: a used, expired or foreign code, or a verifier that does not match.
            reason = f"{body.get('error', 'unknown')}: {body.get('error_description', '')}"
            raise _Refused(400, f"The identity provider refused the login code ({reason}).")
        if not isinstance(body.get("id_token"), str):
            raise _Refused(401, "The identity provider sent no ID token.")
        return body

    async def verify(self, tokens: dict[str, Any], nonce: str) -> None:
        """Checks the ID token: signature (JWKS), iss, aud, exp/iat, nonce, azp, at_hash."""
        try:
            try:
                token = jwt.decode(tokens["id_token"], await self.keys(), algorithms=_ALGORITHMS)
            except InvalidKeyIdError:
                token = jwt.decode(tokens["id_token"], await self.keys(refresh=True), algorithms=_ALGORITHMS)
            options = {
                # The configured issuer, exactly: not whatever the discovery document claims.
                "iss": {"essential": True, "value": self.settings.issuer},
                "aud": {"essential": True, "value": self.settings.client_id},
            }
            params = {"nonce": nonce, "client_id": self.settings.client_id, "access_token": tokens.get("access_token")}
            CodeIDToken(token.claims, token.header, options, params).validate(leeway=_LEEWAY_S)
        except (JoseError, ValueError) as error:
            raise _Refused(401, f"The identity provider's ID token is not valid ({error}).") from error


def _refusal(status: int, why: str) -> HTMLResponse:
    log.info("OIDC login refused (%d): %s", status, why)
    page = (
        "<!doctype html><meta charset=utf-8><title>Login failed</title><h1>Login failed</h1>"
        f'<p>{html.escape(why)}</p><p><a href="/auth/login">Log in again</a></p>'
    )
    return HTMLResponse(page, status_code=status)


def oidc_routes(gateway: Gateway) -> list[BaseRoute]:
    """``/auth/login`` and ``/auth/callback`` for ``gateway.settings.oidc`` (none without it)."""
    if gateway.settings.oidc is None:
        return []
    provider = _Provider(gateway.settings.oidc)
    scopes = gateway.settings.oidc.scopes.split()
    if "openid" not in scopes:  # without it there is no ID token
        scopes.insert(0, "openid")
    user_me = gateway.router.match("GET", "/v1/users/me")
    assert user_me is not None, "GetUser has no REST route"

    async def login(request: Request) -> Response:
        try:
            endpoint = (await provider.metadata())["authorization_endpoint"]
        except _Refused as refused:
            return _refusal(refused.status, refused.why)
        pending = {
            "state": secrets.token_urlsafe(24),
            "nonce": secrets.token_urlsafe(24),
            "verifier": secrets.token_urlsafe(48),  # 64 characters; RFC 7636 asks for 43 to 128
            # From the request's own host and scheme: the gateway may sit anywhere (uvicorn honours
            # X-Forwarded-Proto from trusted proxies).
            "redirect_uri": str(request.url_for("oidc_callback")),
            "next": safe_next(request.query_params.get("next")),
        }
        request.session[_PENDING] = pending
        params = {
            "response_type": "code",
            "client_id": provider.settings.client_id,
            "redirect_uri": pending["redirect_uri"],
            "scope": " ".join(scopes),
            "state": pending["state"],
            "nonce": pending["nonce"],
            "code_challenge": create_s256_code_challenge(pending["verifier"]),
            "code_challenge_method": "S256",
        }
        return RedirectResponse(str(httpx.URL(endpoint).copy_merge_params(params)), status_code=302)

    async def callback(request: Request) -> Response:
        # Every refusal leaves the session without a token: start_session is its only writer.
        query = request.query_params
        pending: dict[str, str] | None = request.session.get(_PENDING)
        state = query.get("state", "").encode()  # bytes: compare_digest refuses non-ASCII str
        if not pending or not secrets.compare_digest(state, pending["state"].encode()):
            return _refusal(400, "This login was not started in this browser, or it was already completed.")
        del request.session[_PENDING]  # one use: the same callback again finds nothing to finish
        if "error" in query:
            return _refusal(
                401,
                f"The identity provider did not log you in ({query['error']}: {query.get('error_description', '')}).",
            )
        try:
            tokens = await provider.redeem(query.get("code", ""), pending)
            await provider.verify(tokens, pending["nonce"])
        except _Refused as refused:
            return _refusal(refused.status, refused.why)
        id_token = str(tokens["id_token"])

        # Control creates or updates the user, and must accept the token the session will carry.
        try:
            await gateway.call(user_me, user_service_pb2.GetUserRequest(name="users/me"), f"Bearer {id_token}")
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return _refusal(401, f"Parley does not accept this login: {error.details()}")
            log.warning("control failed during an OIDC login: %s %s", error.code(), error.details())
            return _refusal(502, "Parley cannot complete the login right now. Try again later.")

        response = RedirectResponse(pending["next"], status_code=303)
        start_session(request, response, id_token, secure=gateway.settings.secure_cookies)
        return response

    return [
        Route("/auth/login", login, name="oidc_login"),
        Route("/auth/callback", callback, name="oidc_callback"),
    ]
