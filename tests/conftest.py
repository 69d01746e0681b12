"""Shared fixtures: real PostgreSQL (a fresh database per session) and SQLite, a control
server per backend, and callers of every kind (anonymous, users, API keys)."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from control import ALL_SCOPES, ControlServer, ControlSettings
from gateway import GatewayServer, GatewaySettings
from parley import Client

from .fake_egress import FakeEgress

PG_ADMIN_URL = os.environ.get("PARLEY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TOKEN_SECRET = "test-token-secret-" + "x" * 32
FILES_SECRET = "test-files-secret-" + "f" * 32
#: What control sends the (fake) egress service as its own API key.
SERVICE_API_KEY = "pk_control.test-service-secret"


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database named ``prefix_<random>``, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    with fresh_pg_database("parley_test") as url:
        yield url


@pytest.fixture(scope="session", params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'control.db'}"


@pytest.fixture(scope="session")
async def fake_egress() -> AsyncIterator[FakeEgress]:
    """An egress service that accepts every recording (and records nothing)."""
    async with FakeEgress() as running:
        yield running


@pytest.fixture(scope="session")
async def server(
    database_url: str, fake_egress: FakeEgress, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ControlServer]:
    settings = ControlSettings(
        database_url=database_url,
        token_secret=TOKEN_SECRET,
        dev_login=True,
        sfu_url="ws://sfu.test:7880",
        # Webhooks of the permission matrix point at the loopback discard port.
        webhook_allowed_networks=("127.0.0.0/8",),
        egress_url=fake_egress.url,
        service_api_key=SERVICE_API_KEY,
        recordings_dir=tmp_path_factory.mktemp("recordings"),
        files_secret=FILES_SECRET,
    )
    async with ControlServer(settings) as running:
        yield running


@dataclass
class Callers:
    """Clients of one server, one per kind of caller."""

    server: ControlServer
    anonymous: Client
    admin_key: Client

    async def user(self, subject: str | None = None, *, display_name: str = "") -> tuple[Client, str]:
        """A logged-in user (dev login): its client and ``users/{id}`` name."""
        subject = subject or f"user-{secrets.token_hex(4)}"
        login = await self.anonymous.users.dev_login(subject, display_name=display_name or subject)
        return self.anonymous.with_bearer(login.access_token), login.user.name

    async def key(self, *scopes: str) -> Client:
        response = await self.admin_key.api_keys.create(display_name="test key", scopes=list(scopes))
        key_id = response.api_key.name.removeprefix("apiKeys/")
        return self.anonymous.with_bearer(f"{key_id}.{response.secret}")


@pytest.fixture(scope="session")
async def callers(server: ControlServer) -> AsyncIterator[Callers]:
    key, secret = await server.control.create_api_key(None, "test bootstrap", ALL_SCOPES)
    anonymous = Client(server.target)
    admin_key = anonymous.with_bearer(f"{key.id}.{secret}")
    yield Callers(server, anonymous, admin_key)
    await anonymous.aclose()
    await admin_key.aclose()


@pytest.fixture(scope="session")
async def gateway(server: ControlServer) -> AsyncIterator[GatewayServer]:
    """The REST gateway in front of the session's control server, with the dev login."""
    settings = GatewaySettings(
        control_target=server.target,
        session_secret="test-session-secret-" + "y" * 32,
        dev_login=True,
        secure_cookies=False,
    )
    async with GatewayServer(settings) as running:
        yield running


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "parley-data"
