"""Browser login through a real OIDC provider (tests/oidc.py), end to end over HTTP: the gateway's
/auth/login and /auth/callback (gateway._oidc_login), control creating the user from the ID
token, the cookie session with CSRF, logout, and every refusal leaving no session behind."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx
import pytest

from control import ControlServer, ControlSettings, OidcSettings
from gateway import GatewayServer, GatewaySettings, OidcClientSettings, create_app
from gateway._app import safe_next
from gateway._oidc_login import oidc_routes

from .conftest import TOKEN_SECRET
from .oidc import CLIENT_ID, CLIENT_SECRET, USER_PASSWORD, OidcProvider

pytestmark = pytest.mark.oidc

SESSION_SECRET = "test-session-secret-" + "z" * 32


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Ports:
    """The gateways' ports, chosen before the provider starts: it must know their callbacks."""

    main: int
    #: Configured with the issuer plus a trailing slash: ID tokens' ``iss`` does not match it.
    wrong_issuer: int
    #: In front of a control whose OIDC audience is not our client: control refuses the token.
    refusing_control: int

    def all(self) -> tuple[int, ...]:
        return (self.main, self.wrong_issuer, self.refusing_control)


@dataclass(frozen=True)
class Sites:
    main: str
    wrong_issuer: str
    refusing_control: str


@pytest.fixture(scope="module")
def ports() -> Ports:
    # All three bound at once, so they differ; the gateways bind them again (SO_REUSEADDR).
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(3)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return Ports(*(sock.getsockname()[1] for sock in sockets))


@pytest.fixture(scope="module")
def idp(ports: Ports) -> Iterator[OidcProvider]:
    callbacks = [f"http://127.0.0.1:{port}/auth/callback" for port in ports.all()]
    with OidcProvider.start(redirect_uris=callbacks) as provider:
        yield provider


def _gateway_settings(control_target: str, issuer: str) -> GatewaySettings:
    oidc = OidcClientSettings(issuer=issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    return GatewaySettings(
        control_target=control_target, session_secret=SESSION_SECRET, oidc=oidc, secure_cookies=False
    )


@pytest.fixture(scope="module")
async def sites(tmp_path_factory: pytest.TempPathFactory, idp: OidcProvider, ports: Ports) -> AsyncIterator[Sites]:
    tmp = tmp_path_factory.mktemp("gateway-login")

    def control(db: str, audience: str) -> ControlServer:
        oidc = OidcSettings(issuer=idp.issuer, audience=audience)
        return ControlServer(
            ControlSettings(database_url=f"sqlite:///{tmp / db}", token_secret=TOKEN_SECRET, oidc=oidc)
        )

    async with contextlib.AsyncExitStack() as stack:
        good = await stack.enter_async_context(control("c.db", CLIENT_ID))
        refusing = await stack.enter_async_context(control("refusing.db", "https://another-audience.test"))
        urls = []
        for port, target, issuer in (
            (ports.main, good.target, idp.issuer),
            (ports.wrong_issuer, good.target, idp.issuer + "/"),
            (ports.refusing_control, refusing.target, idp.issuer),
        ):
            server = GatewayServer(_gateway_settings(target, issuer), port=port, extra_routes=[oidc_routes])
            urls.append((await stack.enter_async_context(server)).url)
        yield Sites(*urls)


def _browser(cookies: httpx.Cookies | None = None) -> httpx.AsyncClient:
    """A browser: one cookie jar for the gateway and the provider, redirects followed by hand."""
    return httpx.AsyncClient(timeout=10, follow_redirects=False, cookies=cookies)


def _location(response: httpx.Response) -> str:
    assert response.status_code in (302, 303), (response.request.url, response.status_code, response.text[:500])
    return urljoin(str(response.request.url), response.headers["location"])


def _query(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def _with_query(url: str, **changes: str) -> str:
    return urlsplit(url)._replace(query=urlencode(_query(url) | changes)).geturl()


async def _start_login(browser: httpx.AsyncClient, site: str, next_path: str = "/") -> str:
    """GET /auth/login: the provider's authorization URL the gateway redirects to."""
    response = await browser.get(f"{site}/auth/login", params={"next": next_path})
    assert response.status_code == 302, response.text
    return response.headers["location"]


async def _sign_in(browser: httpx.AsyncClient, authorize_url: str, username: str = "alice") -> str:
    """The provider's part, as in OidcProvider.authorization_code_tokens: the URL it sends the
    browser back to (the gateway's callback with code, state and iss), not yet fetched."""
    interaction = _location(await browser.get(authorize_url))
    form = {"prompt": "login", "login": username, "password": USER_PASSWORD}
    resume = _location(await browser.post(interaction, data=form))
    return _location(await browser.get(resume))


async def _assert_logged_out(browser: httpx.AsyncClient, site: str) -> None:
    session = (await browser.get(f"{site}/auth/session")).json()
    assert session == {"authenticated": False, "csrfToken": ""}
    assert (await browser.get(f"{site}/v1/users/me")).status_code == 401


async def _refused_login(site: str, status: int, why: str) -> None:
    """A full login whose callback the gateway must refuse with ``status``, leaving no session."""
    async with _browser() as browser:
        callback = await _sign_in(browser, await _start_login(browser, site, "/v1/users/me"))
        response = await browser.get(callback)
        assert response.status_code == status, response.text
        assert why in response.text and "parley_csrf" not in response.cookies
        await _assert_logged_out(browser, site)


async def test_login_session_csrf_and_logout(sites: Sites, idp: OidcProvider) -> None:
    site = sites.main
    async with _browser() as browser:
        await _assert_logged_out(browser, site)
        authorize = await _start_login(browser, site, "/v1/users/me")
        params = _query(authorize)
        assert authorize.startswith(f"{idp.issuer}/auth?")
        assert params["client_id"] == CLIENT_ID and params["response_type"] == "code"
        assert params["redirect_uri"] == f"{site}/auth/callback"
        assert params["code_challenge_method"] == "S256" and params["code_challenge"]
        assert params["state"] and params["nonce"] and "openid" in params["scope"].split()

        callback = await _sign_in(browser, authorize)
        assert callback.startswith(f"{site}/auth/callback?") and _query(callback)["state"] == params["state"]
        response = await browser.get(callback)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/v1/users/me"
        assert "parley_session" in response.cookies and "parley_csrf" in response.cookies

        me = await browser.get(f"{site}/v1/users/me")
        assert me.status_code == 200, me.text
        assert (me.json()["subject"], me.json()["email"], me.json()["displayName"]) == (
            "alice",
            "alice@example.test",
            "Alice",
        )

        rooms, room_body = f"{site}/v1/rooms", {"displayName": "x"}
        assert (await browser.post(rooms, json=room_body)).status_code == 403  # cookie write, no CSRF header
        csrf = {"x-csrf-token": browser.cookies["parley_csrf"]}
        room = await browser.post(rooms, json=room_body, headers=csrf)
        assert room.status_code == 200, room.text
        assert room.json()["displayName"] == "x"

        assert (await browser.post(f"{site}/auth/logout")).status_code == 303
        await _assert_logged_out(browser, site)


async def test_forged_state_is_refused(sites: Sites) -> None:
    site = sites.main
    async with _browser() as browser:
        callback = await _sign_in(browser, await _start_login(browser, site, "/v1/users/me"))
        for forged in ("forged", "fälscht", ""):
            response = await browser.get(_with_query(callback, state=forged))
            assert response.status_code == 400 and "not started in this browser" in response.text
            await _assert_logged_out(browser, site)
        # The code itself was good: the same callback with the session's state logs in.
        response = await browser.get(callback)
        assert response.status_code == 303 and response.headers["location"] == "/v1/users/me"
        assert (await browser.get(f"{site}/v1/users/me")).status_code == 200
        # Once: the login is finished, so the callback again is refused (the session stays).
        response = await browser.get(callback)
        assert response.status_code == 400 and "already completed" in response.text
        assert (await browser.get(f"{site}/v1/users/me")).status_code == 200


async def test_replayed_code_is_refused_by_the_provider(sites: Sites) -> None:
    site = sites.main
    async with _browser() as browser:
        callback = await _sign_in(browser, await _start_login(browser, site))
        # The browser's cookies before the callback: the pending login's state and verifier. A
        # replay with them passes the gateway's state check, so only the provider can refuse it.
        pending = httpx.Cookies(browser.cookies)
        assert (await browser.get(callback)).status_code == 303
    async with _browser(pending) as replay:
        response = await replay.get(callback)
        assert response.status_code == 400 and "invalid_grant" in response.text, response.text
        assert "parley_csrf" not in response.cookies
        await _assert_logged_out(replay, site)


async def test_code_with_another_logins_verifier_is_refused(sites: Sites) -> None:
    site = sites.main
    async with _browser() as a, _browser() as b:
        callback_a = await _sign_in(a, await _start_login(a, site))
        state_b = _query(await _start_login(b, site))["state"]
        # A's code delivered to B's session with B's state: the gateway exchanges it with B's
        # PKCE verifier, which does not match A's challenge.
        response = await b.get(_with_query(callback_a, state=state_b))
        assert response.status_code == 400 and "invalid_grant" in response.text, response.text
        await _assert_logged_out(b, site)
        await _assert_logged_out(a, site)


async def test_denial_at_the_provider_is_refused(sites: Sites, idp: OidcProvider) -> None:
    site = sites.main
    async with _browser() as browser:
        state = _query(await _start_login(browser, site))["state"]
        # What the provider sends when the person cancels (the test provider has no cancel button).
        denied = {"error": "access_denied", "error_description": "End-User aborted interaction", "state": state}
        response = await browser.get(f"{site}/auth/callback", params=denied | {"iss": idp.issuer})
        assert response.status_code == 401 and "access_denied" in response.text
        await _assert_logged_out(browser, site)


async def test_id_token_from_another_issuer_is_refused(sites: Sites) -> None:
    # The gateway trusts "<issuer>/" but the tokens say "<issuer>": checked by the gateway itself.
    await _refused_login(sites.wrong_issuer, 401, "ID token is not valid")


async def test_token_that_control_refuses_is_refused(sites: Sites) -> None:
    await _refused_login(sites.refusing_control, 401, "does not accept this login")


async def test_unreachable_provider_is_a_clear_502() -> None:
    app = create_app(_gateway_settings("127.0.0.1:1", f"http://127.0.0.1:{_free_port()}"), extra_routes=[oidc_routes])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test") as browser:
        response = await browser.get("/auth/login")
    assert response.status_code == 502 and "cannot be reached" in response.text


def test_no_routes_without_oidc() -> None:
    settings = GatewaySettings(control_target="127.0.0.1:1", session_secret=SESSION_SECRET)
    assert oidc_routes(create_app(settings).state.gateway) == []


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/users/me", "/v1/users/me"),
        ("/rooms?x=1", "/rooms?x=1"),
        (None, "/"),
        ("", "/"),
        ("https://evil.test/", "/"),
        ("//evil.test/", "/"),
        ("/\\evil.test/", "/"),
        ("rooms", "/"),
    ],
)
def test_next_is_a_path_on_this_site(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected
