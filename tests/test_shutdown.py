"""SIGTERM to each service, each in its own process (as Kubernetes stops a pod): health turns
NOT_SERVING, calls in flight drain, the SFU tells its participants the server is shutting down,
and the process exits 0 within its grace period with nothing left running."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parley import VideoGrants, create_join_token
from parley.room import Room
from parley.sfu.v1 import resources_pb2 as sfu_res

from .conftest import TOKEN_SECRET

GRACE = 3.0
#: Seconds a stopped service may take beyond its grace period (interpreter teardown).
TEARDOWN = 10.0
_ROOT = Path(__file__).resolve().parent.parent


class Service:
    def __init__(self, process: asyncio.subprocess.Process, target: str) -> None:
        self.process = process
        self.target = target
        self.output = ""

    async def terminate(self) -> float:
        """SIGTERM; the seconds it took to exit. Its output is kept in ``output``."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stdout is not None
        rest = await asyncio.wait_for(self.process.stdout.read(), timeout=GRACE + TEARDOWN)
        self.output += rest.decode(errors="replace")
        await asyncio.wait_for(self.process.wait(), timeout=5)
        return time.monotonic() - started


@asynccontextmanager
async def service(module: str, env: Mapping[str, str], listening: str) -> AsyncIterator[Service]:
    """``python -m module`` until it logs ``listening`` (a regex with the address as group 1)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=_ROOT,
        env={**os.environ, "PARLEY_LOG_LEVEL": "INFO", "PARLEY_SHUTDOWN_GRACE": str(GRACE), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen = ""
    try:
        while (found := re.search(listening, seen)) is None:
            line = await asyncio.wait_for(process.stdout.readline(), timeout=90)
            assert line, f"{module} exited before listening:\n{seen}"
            seen += line.decode(errors="replace")
        running = Service(process, found.group(1))
        running.output = seen
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def assert_clean_exit(running: Service, seconds: float) -> None:
    assert running.process.returncode == 0, running.output
    assert seconds < GRACE + TEARDOWN, running.output
    for sign in ("Task was destroyed", "Traceback", "was never awaited"):
        assert sign not in running.output, running.output


async def _health_after_sigterm(running: Service) -> list[int]:
    """The health statuses a Watch sees from before SIGTERM until the server ends it."""
    statuses: list[int] = []
    async with grpc.aio.insecure_channel(running.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))  # type: ignore[attr-defined]
        statuses.append((await watch.read()).status)
        seconds = asyncio.create_task(running.terminate())
        # The server ends the stream itself once it has said NOT_SERVING: the grace period
        # does not run out on it.
        while (reply := await watch.read()) is not grpc.aio.EOF:
            statuses.append(reply.status)
        assert await watch.code() == grpc.StatusCode.OK
        assert_clean_exit(running, await seconds)
    return statuses


async def test_control_drains_on_sigterm(tmp_path: Path) -> None:
    env = {
        "PARLEY_DATABASE_URL": f"sqlite:///{tmp_path / 'control.db'}",
        "PARLEY_TOKEN_SECRET": TOKEN_SECRET,
        "PARLEY_GRPC_ADDRESS": "127.0.0.1:0",
        "PARLEY_METRICS_ADDRESS": "",
    }
    async with service("control", env, r"control listening on (\S+)") as running:
        statuses = await _health_after_sigterm(running)
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    assert statuses[:2] == [serving, not_serving]
    assert "SIGTERM received, draining" in running.output


async def test_sfu_says_goodbye_to_its_participants_on_sigterm() -> None:
    env = {"PARLEY_TOKEN_SECRET": TOKEN_SECRET, "PARLEY_SFU_GRPC_ADDRESS": "127.0.0.1:0", "PARLEY_METRICS_ADDRESS": ""}
    async with service("sfu", env, r"sfu listening on (\S+)") as running:
        token, _ = create_join_token(
            key_id="parley", secret=TOKEN_SECRET, identity="bot", grants=VideoGrants(room="shutdown-room")
        )
        room = await Room.connect(f"grpc://{running.target}", token)
        try:
            seconds = asyncio.create_task(running.terminate())
            left = await room.wait_for("left", within=GRACE + TEARDOWN)
            assert left.reason == sfu_res.LEAVE_REASON_SERVER_SHUTDOWN
            assert_clean_exit(running, await seconds)
        finally:
            await room.close()


async def test_gateway_stops_on_sigterm() -> None:
    env = {
        "PARLEY_CONTROL_TARGET": "127.0.0.1:1",
        "PARLEY_SESSION_SECRET": "s" * 40,
        "PARLEY_HTTP_ADDRESS": "127.0.0.1:0",
    }
    async with service("gateway", env, r"gateway listening on http://(\S+)") as running:
        assert_clean_exit(running, await running.terminate())


async def test_ai_drains_on_sigterm(tmp_path: Path) -> None:
    env = {
        "PARLEY_AI_DATABASE_URL": f"sqlite:///{tmp_path / 'ai.db'}",
        "PARLEY_AI_STORAGE": str(tmp_path / "storage"),
        "PARLEY_CONTROL_TARGET": "127.0.0.1:1",
        "PARLEY_AI_GRPC_ADDRESS": "127.0.0.1:0",
        "PARLEY_AI_RAY_NUM_CPUS": "1",
        "PARLEY_METRICS_ADDRESS": "",
    }
    async with service("ai", env, r"ai listening on (\S+)") as running:
        statuses = await _health_after_sigterm(running)
    assert statuses[:2] == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
