"""Join calls per second on the control plane, PostgreSQL and SQLite side by side.

Runs ``python -m control`` in its own process per database (a fresh PostgreSQL database, a
fresh SQLite file), then drives it from this process with concurrent gRPC clients for a fixed
time per workload:

- ``health``: the gRPC health check, the floor of what one call costs (the baseline);
- ``join (guest)``: an anonymous guest joining a public room (room read + token signing);
- ``join (user)``: a logged-in user joining a trusted room (token check, user and role reads);
- ``get room``: reading a room by slug.

Prints calls/s, p50 / p99 latency and the ratios to the baseline and between databases.

    python -m bench.control_bench [--seconds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory

import grpc
import psycopg
from grpc_health.v1 import health_pb2, health_pb2_grpc

from parley import Client
from parley.control.v1 import resources_pb2 as res

PG_ADMIN_URL = os.environ.get("PARLEY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Result:
    backend: str
    workload: str
    calls: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _database(backend: str) -> Iterator[str]:
    if backend == "sqlite":
        with TemporaryDirectory() as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"parley_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _control(database_url: str) -> Iterator[str]:
    """``python -m control`` in a subprocess, with the dev login; yields its address."""
    address = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_TOKEN_SECRET": secrets.token_urlsafe(40),
        "PARLEY_DEV_LOGIN": "1",
        "PARLEY_GRPC_ADDRESS": address,
        # Metrics on, as in production, on a free port.
        "PARLEY_METRICS_ADDRESS": "127.0.0.1:0",
    }
    # Its per-call log lines go nowhere: an unread pipe would fill and block the server.
    with subprocess.Popen(
        [sys.executable, "-m", "control"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        try:
            yield address
        finally:
            process.terminate()
            process.wait(timeout=20)


async def _wait_serving(address: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1)  # type: ignore[attr-defined]
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.aio.AioRpcError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


async def _drive(call: Callable[[], Awaitable[object]], *, seconds: float, concurrency: int) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while (start := time.perf_counter()) < stop_at:
            await call()
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies


async def _bench_backend(backend: str, address: str, *, seconds: float, concurrency: int) -> list[Result]:
    await _wait_serving(address)
    # A few channels, as a fleet of gateway replicas would hold.
    clients = [Client(address) for _ in range(4)]
    try:
        anonymous = clients[0]
        login = await anonymous.users.dev_login("bench-owner")
        owner = anonymous.with_bearer(login.access_token)
        public = await owner.rooms.create(display_name="bench public")
        trusted = await owner.rooms.create(display_name="bench trusted", access_level=res.ACCESS_LEVEL_TRUSTED)
        user_token = (await anonymous.users.dev_login("bench-user")).access_token
        users = [c.with_bearer(user_token) for c in clients]
        healths = [health_pb2_grpc.HealthStub(c.channel) for c in clients]
        counter = iter(range(10**9))

        def pick(items: list[Client]) -> Client:
            return items[next(counter) % len(items)]

        async def health() -> None:
            await healths[next(counter) % len(healths)].Check(health_pb2.HealthCheckRequest())  # type: ignore[attr-defined]

        async def join_guest() -> None:
            grant = await pick(clients).rooms.join(public.slug, display_name="Guest")
            assert grant.HasField("grant")

        async def join_user() -> None:
            grant = await pick(users).rooms.join(trusted.slug)
            assert grant.HasField("grant")

        async def get_room() -> None:
            await pick(clients).rooms.get(public.slug)

        results = []
        for workload, call in (
            ("health (baseline)", health),
            ("join (guest)", join_guest),
            ("join (user)", join_user),
            ("get room", get_room),
        ):
            await _drive(call, seconds=min(1.0, seconds / 4), concurrency=concurrency)  # warm up
            calls, latencies = await _drive(call, seconds=seconds, concurrency=concurrency)
            results.append(Result(backend, workload, calls, seconds, latencies))
            print(f"  {backend:<10} {workload:<18} {calls / seconds:8.0f} calls/s", file=sys.stderr)
        return results
    finally:
        for client in clients:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0, help="measuring time per workload")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight at once")
    parser.add_argument("--backends", default="postgresql,sqlite")
    args = parser.parse_args()

    results: list[Result] = []
    for backend in args.backends.split(","):
        with _database(backend) as url, _control(url) as address:
            results += asyncio.run(_bench_backend(backend, address, seconds=args.seconds, concurrency=args.concurrency))

    print(
        f"\ncontrol plane, {args.concurrency} calls in flight, {args.seconds:.0f} s per workload, "
        f"{os.cpu_count()} CPUs (server and load generator share them)"
    )
    print(f"{'backend':<11}{'workload':<19}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs health':>11}")
    baseline = {r.backend: r.rate for r in results if r.workload.startswith("health")}
    for r in results:
        print(
            f"{r.backend:<11}{r.workload:<19}{r.rate:>9.0f}{statistics.median(r.latencies_ms):>9.2f}"
            f"{r.percentile(0.99):>9.2f}{r.rate / baseline[r.backend]:>10.2f}x"
        )
    by_key = {(r.backend, r.workload): r for r in results}
    if {"postgresql", "sqlite"} <= set(baseline):
        print("\nPostgreSQL / SQLite throughput:")
        for workload in ("join (guest)", "join (user)", "get room"):
            pg, lite = by_key["postgresql", workload], by_key["sqlite", workload]
            print(f"  {workload:<18}{pg.rate / lite.rate:6.2f}x")


if __name__ == "__main__":
    main()
