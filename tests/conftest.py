"""Shared fixtures: real PostgreSQL (a fresh database per session) and SQLite, a control
server per backend, callers of every kind (anonymous, users, API keys), a moto S3 server, and
a local Ray cluster (the AI and egress services' work runs on it)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from control import ALL_SCOPES, ControlServer, ControlSettings
from gateway import GatewayServer, GatewaySettings
from parley import Client

from .fake_egress import FakeEgress
from .s3 import moto_server, s3_client

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

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


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a moto S3 server running for this test session (``http://127.0.0.1:PORT``)."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto_server.log") as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3(s3_endpoint: str) -> S3Client:
    """A boto3 S3 client for the session's moto server (dummy credentials, us-east-1)."""
    return s3_client(s3_endpoint)


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """A local Ray cluster (8 logical CPUs) in its own process group, as production runs one beside the
    service. Started by ``ray start`` rather than from this process: a local Ray spawns its
    daemons from the process that starts it, and from a pytest process that already runs gRPC
    servers they failed to come up ("The current node timed out during startup")."""
    # Ray's socket paths must stay short (AF_UNIX limit): not pytest's deep tmp folders.
    folder = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [
        str(Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        # Logical CPUs for scheduling, more than the machine's 2 cores: the AI tests' speech
        # actors (1 CPU each, kept for the session) and the egress tests' recorders (1.2 per
        # composite) share this cluster, and must all be placeable.
        "--num-cpus=8",
        f"--temp-dir={folder}",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    log_path = folder / "ray-start.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while b"Ray runtime started" not in log_path.read_bytes():
            assert process.poll() is None, f"ray start exited {process.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"ray start did not finish:\n{log_path.read_text()}"
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        # The whole group: `ray start`, its GCS and raylet, and the workers they spawned.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        shutil.rmtree(folder, ignore_errors=True)
