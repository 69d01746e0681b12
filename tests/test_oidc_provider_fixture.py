"""The OIDC test provider (tests/oidc.py + tests/oidc_provider/server.mjs) behaves as tests expect."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from tests.oidc import CLIENT_ID, OidcProvider

pytestmark = pytest.mark.oidc

API = "https://api.parley.test/v1"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider.start() as provider:
        yield provider


def _verify(idp: OidcProvider, token: str, *, audience: str, **options: Any) -> dict[str, Any]:
    """Check the signature against the provider's published JWKS (by kid) and decode."""
    header = jwt.get_unverified_header(token)
    keys = {key["kid"]: key for key in idp.jwks()["keys"]}
    assert header["alg"] == "RS256"
    assert header["kid"] in keys
    key = jwt.PyJWK(keys[header["kid"]])
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience=audience, issuer=idp.issuer, **options
    )
    return claims


def test_discovery_names_issuer_and_jwks(idp: OidcProvider) -> None:
    document = idp.discovery()
    assert document["issuer"] == idp.issuer
    assert document["jwks_uri"] == idp.jwks_uri
    assert document["token_endpoint"] == idp.token_endpoint
    assert document["authorization_endpoint"] == idp.authorization_endpoint
    assert document["code_challenge_methods_supported"] == ["S256"]


def test_client_credentials_token_is_jwt_for_resource(idp: OidcProvider) -> None:
    token = idp.client_credentials_token(API, scope="api:read")
    claims = _verify(idp, token, audience=API)
    assert claims["aud"] == API
    assert claims["iss"] == idp.issuer
    assert claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "api:read"
    assert claims["exp"] - claims["iat"] == 300


def test_short_lived_resource_gets_one_second_token(idp: OidcProvider) -> None:
    resource = f"{API}/short-lived"
    token = idp.client_credentials_token(resource)
    # Skip the exp check: the token may already be expired by the time it is decoded.
    claims = _verify(idp, token, audience=resource, options={"verify_exp": False})
    assert claims["exp"] - claims["iat"] <= 2


def test_alice_logs_in_with_authorization_code_and_pkce(idp: OidcProvider) -> None:
    tokens = idp.authorization_code_tokens("alice", scope="openid email profile offline_access api:read", resource=API)
    id_claims = _verify(idp, tokens["id_token"], audience=CLIENT_ID)
    assert id_claims["sub"] == "alice"
    assert id_claims["email"] == "alice@example.test"
    assert id_claims["name"] == "Alice"
    access_claims = _verify(idp, tokens["access_token"], audience=API)
    assert access_claims["sub"] == "alice"
    assert access_claims["scope"] == "api:read"
    assert "refresh_token" in tokens
