"""Control accepts tokens from a real OIDC provider (npm oidc-provider) and refuses expired,
wrong-audience, wrong-issuer and forged ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from control import ControlServer, ControlSettings, OidcSettings
from parley import Client, ParleyError

from .conftest import TOKEN_SECRET
from .oidc import CLIENT_ID, OidcProvider

pytestmark = pytest.mark.oidc

RESOURCE = "https://parley.test/api"
SHORT_LIVED = "https://parley.test/short-lived"


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider.start() as provider:
        yield provider


@pytest.fixture(scope="module")
def other_idp() -> Iterator[OidcProvider]:
    with OidcProvider.start() as provider:
        yield provider


async def _server(tmp_path: Path, idp: OidcProvider, audience: str) -> ControlServer:
    oidc = OidcSettings(issuer=idp.issuer, audience=audience, leeway=timedelta(0))
    settings = ControlSettings(
        database_url=f"sqlite:///{tmp_path / f'{abs(hash(audience))}.db'}", token_secret=TOKEN_SECRET, oidc=oidc
    )
    server = ControlServer(settings)
    await server.start()
    return server


@pytest.fixture
async def api_server(tmp_path: Path, idp: OidcProvider) -> AsyncIterator[ControlServer]:
    server = await _server(tmp_path, idp, RESOURCE)
    yield server
    await server.stop()


async def _me(server: ControlServer, token: str) -> str:
    async with Client(server.target, bearer=token) as client:
        return (await client.users.get()).subject


async def _refused(server: ControlServer, token: str) -> ParleyError:
    with pytest.raises(ParleyError) as caught:
        await _me(server, token)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    return caught.value


async def test_access_token_is_accepted_and_creates_the_user(api_server: ControlServer, idp: OidcProvider) -> None:
    token = await asyncio.to_thread(idp.client_credentials_token, RESOURCE)
    assert await _me(api_server, token) == CLIENT_ID
    async with Client(api_server.target, bearer=token) as client:
        room = await client.rooms.create(display_name="OIDC room")
        assert [r.name async for r in client.rooms.list()] == [room.name]


async def test_id_token_from_the_login_flow(tmp_path: Path, idp: OidcProvider) -> None:
    server = await _server(tmp_path, idp, CLIENT_ID)  # ID tokens are issued for the client
    try:
        tokens = await asyncio.to_thread(idp.authorization_code_tokens, "alice")
        async with Client(server.target, bearer=tokens["id_token"]) as client:
            me = await client.users.get()
        assert (me.subject, me.email, me.display_name) == ("alice", "alice@example.test", "Alice")
    finally:
        await server.stop()


async def test_expired_token_is_refused(tmp_path: Path, idp: OidcProvider) -> None:
    server = await _server(tmp_path, idp, SHORT_LIVED)
    try:
        token = await asyncio.to_thread(idp.client_credentials_token, SHORT_LIVED)
        claims = jwt.decode(token, options={"verify_signature": False})
        await asyncio.sleep(max(0.0, claims["exp"] - time.time()) + 1.1)
        assert "expired" in (await _refused(server, token)).message
    finally:
        await server.stop()


async def test_wrong_audience_is_refused(api_server: ControlServer, idp: OidcProvider) -> None:
    token = await asyncio.to_thread(idp.client_credentials_token, "https://elsewhere.test/api")
    assert "audience" in (await _refused(api_server, token)).message


async def test_other_issuer_is_refused(api_server: ControlServer, other_idp: OidcProvider) -> None:
    token = await asyncio.to_thread(other_idp.client_credentials_token, RESOURCE)
    assert "issuer" in (await _refused(api_server, token)).message


async def test_forged_token_is_refused(api_server: ControlServer, idp: OidcProvider) -> None:
    genuine = await asyncio.to_thread(idp.client_credentials_token, RESOURCE)
    header = jwt.get_unverified_header(genuine)
    claims = jwt.decode(genuine, options={"verify_signature": False}) | {"sub": "mallory"}
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims, forger, algorithm="RS256", headers={"kid": header["kid"]})
    await _refused(api_server, forged)
    await _refused(api_server, genuine[:-4] + "AAAA")


async def test_dev_login_is_refused_unless_enabled(api_server: ControlServer) -> None:
    async with Client(api_server.target) as client:
        with pytest.raises(ParleyError) as caught:
            await client.users.dev_login("alice")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.reason == "DEV_LOGIN_DISABLED"
