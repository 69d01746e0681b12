"""A real Parley for your own tests: the control plane (on SQLite) and one SFU node, each in its
own process on free loopback ports, torn down when the block ends (Temporal's
``temporalio.testing`` is the model).

    from parley.room import Room
    from parley.testing import ParleyTestEnvironment

    async def test_my_bot_hears_the_meeting() -> None:
        async with await ParleyTestEnvironment.start() as env:
            room = await env.client.rooms.create(display_name="Stand-up")
            async with await Room.connect(env.sfu_url, env.join_token(room, "my-bot")) as bot:
                ...  # publish, receive, send data as your bot does

``env.client`` is a :class:`parley.Client` holding an API key with every scope;
``env.client.with_bearer("")`` calls anonymously, and the dev login is on
(``env.client.users.dev_login("alice")``) for tests that act as users. Join tokens come from
control (``env.client.rooms.create_join_token``) or, without a round trip, from
:meth:`ParleyTestEnvironment.join_token`, signed with ``env.token_secret`` as control signs them.

The services run as ``python -m control`` and ``python -m sfu`` with the interpreter running
the tests (so they must be installed beside the SDK, as a full install of Parley does); the SDK
itself imports none of them. The first API key is made the way an operator makes it, with
``python -m control keys create`` on the empty database, and so is the SFU's own key (scope
``sfu:report``), with which it reports meetings to control. Each process writes its log to the
environment's folder; a service that fails to start raises :class:`ParleyTestEnvironmentError`
with the end of its log.

Webhooks may target loopback addresses here, and :class:`WebhookReceiver` receives them: an
HTTP server on a free port that checks each delivery's signature and keeps the events::

    async with WebhookReceiver() as receiver:
        created = await env.client.webhooks.create(receiver.url)
        receiver.secrets[created.webhook.signing_key_id] = created.secret
        ...  # run a meeting
        events = await receiver.wait_for_events(4)
"""

from __future__ import annotations

import asyncio
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
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ._client import Client
from ._errors import ParleyError
from ._names import parse_room_path, room_path
from ._scopes import API_KEY_SCOPES
from ._tokens import DEFAULT_TTL, VideoGrants, create_join_token
from ._webhook_receiver import ReceivedEvent, WebhookReceiver
from .control.v1 import resources_pb2 as control_res

__all__ = ["ParleyTestEnvironment", "ParleyTestEnvironmentError", "ReceivedEvent", "WebhookReceiver"]

_LOG_TAIL_BYTES = 4000


class ParleyTestEnvironmentError(ParleyError):
    """A service of the test environment did not start (its log's end is in the message)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    return data[-_LOG_TAIL_BYTES:].decode(errors="replace")


@dataclass
class _Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def failure(self, what: str) -> ParleyTestEnvironmentError:
        return ParleyTestEnvironmentError(f"{self.name} {what}; the end of its log ({self.log}):\n{_tail(self.log)}")


class ParleyTestEnvironment:
    """Control (SQLite, dev login on) and one SFU node in subprocesses, for tests.

    Create it with :meth:`start` and end it with :meth:`shutdown` or ``async with``.

    Attributes:
        client: A client of control authenticated with an API key holding every scope.
        control_target: Control's gRPC address, ``host:port``.
        sfu_url: Where participants connect, ``grpc://host:port`` (for ``Room.connect``).
        token_secret: The secret join tokens are signed with (key id ``token_key_id``).
        token_key_id: Names ``token_secret`` in tokens (``parley``).
        api_key: The id (``pk_...``) of the API key ``client`` uses.
        api_secret: Its secret.
        database_url: Control's database, a SQLite file in ``folder``.
        folder: Where the database and the services' logs live (``control.log``, ``sfu.log``).
    """

    def __init__(
        self,
        *,
        client: Client,
        control_target: str,
        sfu_url: str,
        token_secret: str,
        api_key: str,
        api_secret: str,
        database_url: str,
        folder: Path,
        services: Sequence[_Service],
        remove_folder: bool,
        shutdown_grace: float,
    ) -> None:
        self.client = client
        self.control_target = control_target
        self.sfu_url = sfu_url
        self.token_secret = token_secret
        self.token_key_id = "parley"
        self.api_key = api_key
        self.api_secret = api_secret
        self.database_url = database_url
        self.folder = folder
        self._services = list(services)
        self._remove_folder = remove_folder
        self._shutdown_grace = shutdown_grace
        self._closed = False

    @classmethod
    async def start(
        cls,
        *,
        folder: Path | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 60.0,
        shutdown_grace: float = 10.0,
    ) -> ParleyTestEnvironment:
        """Makes the admin API key and the SFU's reporting key, starts the SFU and control, and
        waits until both serve.

        Args:
            folder: Where the database and logs go; default a new temporary folder, removed at
                shutdown (a folder given here is kept).
            env: Extra environment for both services, e.g. ``{"PARLEY_SFU_EMPTY_TIMEOUT": "2"}``
                or ``{"PARLEY_LOG_LEVEL": "DEBUG"}``.
            startup_timeout: Seconds each step may take before the start fails.
            shutdown_grace: Seconds each service has to stop after SIGTERM before it is killed
                (the SFU first, then control).
        """
        remove_folder = folder is None
        folder = Path(tempfile.mkdtemp(prefix="parley-test-")) if folder is None else folder
        folder.mkdir(parents=True, exist_ok=True)
        token_secret = secrets.token_urlsafe(48)
        sfu_port, control_port = _free_port(), _free_port()
        control_target, sfu_url = f"127.0.0.1:{control_port}", f"grpc://127.0.0.1:{sfu_port}"
        database_url = f"sqlite:///{folder / 'control.db'}"
        base = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
            "PYTHONUNBUFFERED": "1",
            "PARLEY_TOKEN_SECRET": token_secret,
            "PARLEY_TOKEN_KEY_ID": "parley",
            # Metrics on a free port each: the services' fixed defaults may be taken.
            "PARLEY_METRICS_ADDRESS": "127.0.0.1:0",
            **(env or {}),
        }
        services: list[_Service] = []
        client: Client | None = None
        try:
            api_key, api_secret = await _create_key(
                base, database_url, startup_timeout, "parley.testing admin", API_KEY_SCOPES
            )
            # The SFU reports meetings to control (it retries until control serves).
            report_key = ".".join(
                await _create_key(base, database_url, startup_timeout, "parley.testing sfu", ["sfu:report"])
            )
            sfu_env = {
                **base,
                "PARLEY_SFU_GRPC_ADDRESS": f"127.0.0.1:{sfu_port}",
                "PARLEY_CONTROL_TARGET": control_target,
                "PARLEY_SFU_REPORT_API_KEY": report_key,
            }
            services.append(_spawn("sfu", sfu_env, folder / "sfu.log"))
            control_env = {
                **base,
                "PARLEY_DATABASE_URL": database_url,
                "PARLEY_GRPC_ADDRESS": control_target,
                "PARLEY_SFU_URL": sfu_url,
                "PARLEY_DEV_LOGIN": base.get("PARLEY_DEV_LOGIN", "1"),
                # Webhooks may target receivers on this machine (parley.testing.WebhookReceiver).
                "PARLEY_WEBHOOK_ALLOWED_NETWORKS": base.get("PARLEY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128"),
            }
            services.append(_spawn("control", control_env, folder / "control.log"))
            await _all_or_first_error(
                _wait_serving(services[0], f"127.0.0.1:{sfu_port}", startup_timeout),
                _wait_serving(services[1], control_target, startup_timeout),
            )
            client = Client(control_target, bearer=f"{api_key}.{api_secret}")
        except BaseException:
            await _stop(services, shutdown_grace)
            if remove_folder:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(
            client=client,
            control_target=control_target,
            sfu_url=sfu_url,
            token_secret=token_secret,
            api_key=api_key,
            api_secret=api_secret,
            database_url=database_url,
            folder=folder,
            services=services,
            remove_folder=remove_folder,
            shutdown_grace=shutdown_grace,
        )

    @property
    def pids(self) -> dict[str, int]:
        """The process id of each service (``control``, ``sfu``)."""
        return {service.name: service.process.pid for service in self._services}

    def join_token(
        self,
        room: str | control_res.Room,
        identity: str,
        *,
        name: str = "",
        metadata: str = "",
        grants: VideoGrants | None = None,
        ttl: timedelta = DEFAULT_TTL,
    ) -> str:
        """A join token for ``room``, signed here as control signs them (no call to control).

        Args:
            room: The room (as ``env.client.rooms.create`` returns it), its resource name
                ``rooms/{id}``, or its id. Not its slug: the SFU knows rooms by id.
            identity: The participant identity, unique in the room.
            name: Display name.
            metadata: Application data handed to the others.
            grants: What the holder may do; default: join, publish, subscribe and send data.
                Its ``room`` is replaced by ``room``'s id.
            ttl: How long the token is valid.
        """
        name_or_id = room.name if isinstance(room, control_res.Room) else room
        room_id = parse_room_path(room_path(name_or_id))
        video = replace(grants, room=room_id) if grants is not None else VideoGrants(room=room_id)
        token, _ = create_join_token(
            key_id=self.token_key_id,
            secret=self.token_secret,
            identity=identity,
            grants=video,
            name=name,
            metadata=metadata,
            ttl=ttl,
        )
        return token

    async def shutdown(self) -> None:
        """Closes the client, stops the services (SIGTERM, then SIGKILL after the grace period)
        and waits until they are gone; removes the temporary folder. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.client.aclose()
        finally:
            await _stop(self._services, self._shutdown_grace)
            if self._remove_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    async def __aenter__(self) -> ParleyTestEnvironment:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.shutdown()


async def _create_key(
    env: Mapping[str, str], database_url: str, seconds: float, name: str, scopes: Sequence[str]
) -> tuple[str, str]:
    """``python -m control keys create`` on the new database, as an operator makes keys."""
    command = [sys.executable, "-m", "control", "keys", "create", "--name", name]
    for scope in scopes:
        command += ["--scope", scope]
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            env={**env, "PARLEY_DATABASE_URL": database_url},
            capture_output=True,
            text=True,
            timeout=seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ParleyTestEnvironmentError(f"`python -m control keys create` took over {seconds:g} s") from None
    printed = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode or not {"PARLEY_API_KEY", "PARLEY_API_SECRET"} <= printed.keys():
        raise ParleyTestEnvironmentError(
            f"`python -m control keys create` failed (exit {done.returncode}):\n{done.stderr[-_LOG_TAIL_BYTES:]}"
        )
    return printed["PARLEY_API_KEY"], printed["PARLEY_API_SECRET"]


def _spawn(module: str, env: Mapping[str, str], log: Path) -> _Service:
    with log.open("wb") as output:  # the child keeps its own descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return _Service(module, process, log)


async def _wait_serving(service: _Service, target: str, seconds: float) -> None:
    """Polls the gRPC health service of ``target`` until it answers SERVING (a new channel each
    time, so grpc's reconnect backoff never adds seconds to a start)."""
    deadline = time.monotonic() + seconds
    while True:
        if service.process.poll() is not None:
            raise service.failure(f"exited with status {service.process.returncode} while starting")
        with contextlib.suppress(grpc.aio.AioRpcError):
            async with grpc.aio.insecure_channel(target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                answer = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)  # type: ignore[attr-defined]
            if answer.status == health_pb2.HealthCheckResponse.SERVING:
                return
        if time.monotonic() > deadline:
            raise service.failure(f"did not serve on {target} within {seconds:g} s")
        await asyncio.sleep(0.1)


async def _all_or_first_error(*steps: Coroutine[Any, Any, None]) -> None:
    """Runs ``steps`` at once; the first to fail cancels the others and its error is raised."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            error = task.exception()
            if error is not None:
                raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _stop(services: Sequence[_Service], grace: float) -> None:
    """SIGTERM to each service in turn (the SFU first: it reports the end of its meetings to
    control as it stops), waiting for it; SIGKILL one that still runs after ``grace``."""
    for service in services:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(service.process.wait, grace)
        except subprocess.TimeoutExpired:
            service.process.kill()
            await asyncio.to_thread(service.process.wait)
