"""The web app's login through a real OpenID Connect provider (tests/oidc_provider): control and
an SFU from ``parley.testing`` with OIDC on, a gateway with the OIDC login in front of them, and
headless chromium (``oidc_journey.mjs``): a user signs in on the provider's form, starts a
meeting, and a guest who opens its link meets them (video decoded both ways)."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import GatewayServer, GatewaySettings, OidcClientSettings
from gateway._oidc_login import oidc_routes
from parley.testing import ParleyTestEnvironment

from ..oidc import CLIENT_ID, CLIENT_SECRET, USER_PASSWORD, OidcProvider
from .test_web_app import SCREENS, built_app  # noqa: F401 (the fixture)

SCRIPT = Path(__file__).resolve().parent / "oidc_journey.mjs"


@pytest.fixture(scope="module")
def gateway_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def idp(gateway_port: int) -> Iterator[OidcProvider]:
    with OidcProvider.start(redirect_uris=[f"http://127.0.0.1:{gateway_port}/auth/callback"]) as provider:
        yield provider


@pytest.fixture(scope="module")
async def site(idp: OidcProvider, gateway_port: int, built_app: Path) -> AsyncIterator[str]:  # noqa: F811
    oidc = {"PARLEY_DEV_LOGIN": "false", "PARLEY_OIDC_ISSUER": idp.issuer, "PARLEY_OIDC_AUDIENCE": CLIENT_ID}
    async with await ParleyTestEnvironment.start(env=oidc) as parley:
        settings = GatewaySettings(
            control_target=parley.control_target,
            session_secret="web-oidc-test-session-secret-" + "x" * 32,
            oidc=OidcClientSettings(issuer=idp.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET),
            sfu_target=parley.sfu_url.removeprefix("grpc://"),
            secure_cookies=False,
        )
        async with GatewayServer(settings, port=gateway_port, extra_routes=[oidc_routes]) as gateway:
            yield gateway.url


async def test_a_user_logs_in_with_oidc_and_meets_a_guest(site: str) -> None:
    assert shutil.which("chromium"), "Debian chromium is missing: run ./scripts/setup --test"
    SCREENS.mkdir(parents=True, exist_ok=True)
    process = await asyncio.create_subprocess_exec(
        "node", str(SCRIPT), site, "alice", USER_PASSWORD, str(SCREENS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    output, errors = await asyncio.wait_for(process.communicate(), 300)
    steps: dict[str, dict[str, Any]] = {}
    for line in output.decode().splitlines():
        step = json.loads(line)
        steps[step.pop("step")] = step
    assert process.returncode == 0 and "done" in steps, f"stopped after {list(steps)}:\n{errors.decode()[-4000:]}"
    assert steps["logged-in"]["name"]
    assert len(steps["met"]["hostIdentity"]) == 32  # a user's identity is their user id, not a guest's
    assert steps["met"]["hostDecodes"] > 0 and steps["met"]["guestDecodes"] > 0, steps["met"]
