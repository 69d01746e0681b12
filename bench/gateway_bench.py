"""What the REST facade costs: the same calls over REST through the gateway, over REST through
Envoy's gRPC-JSON transcoder and directly over gRPC, side by side in one run.

Starts control (``python -m control``, PostgreSQL), the gateway (``python -m gateway``) and
Envoy (``bench/envoy_transcoder.py``; skipped with a message when it is not installed or does
not start) as processes of their own, then drives each workload over gRPC, then over REST
(HTTP/1.1 keep-alive, httpx) through each transcoder, with the same number of calls in flight,
and prints calls/s, p50 / p99, CPU per call of each process and the REST/gRPC ratios.

    python -m bench.gateway_bench [--seconds 5] [--concurrency 16]
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
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager

import httpx

from bench.control_bench import Result, _database, _drive, _wait_serving
from bench.envoy_transcoder import EnvoyUnavailable, envoy_transcoder
from parley import Client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def _process(module: str, env: dict[str, str]) -> Iterator[int]:
    with subprocess.Popen(
        [sys.executable, "-m", module], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as process:
        try:
            yield process.pid
        finally:
            process.terminate()
            process.wait(timeout=20)


async def _wait_http(url: str) -> None:
    async with httpx.AsyncClient() as http:
        deadline = time.monotonic() + 60
        while True:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)


async def _run(
    grpc_target: str,
    rest_url: str,
    envoy_url: str | None,
    pids: dict[str, int],
    *,
    seconds: float,
    concurrency: int,
) -> tuple[list[Result], dict[str, dict[str, float]]]:
    await _wait_serving(grpc_target)
    await _wait_http(rest_url)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        Client(grpc_target) as anonymous,
        httpx.AsyncClient(base_url=rest_url, limits=limits) as http,
        httpx.AsyncClient(base_url=envoy_url or rest_url, limits=limits) as envoy,
    ):
        login = await anonymous.users.dev_login("bench-owner")
        owner = anonymous.with_bearer(login.access_token)
        room = await owner.rooms.create(display_name="bench")

        async def grpc_get() -> None:
            await anonymous.rooms.get(room.slug)

        async def rest_get() -> None:
            (await http.get(f"/v1/rooms/{room.slug}")).raise_for_status()

        async def envoy_get() -> None:
            (await envoy.get(f"/v1/rooms/{room.slug}")).raise_for_status()

        async def grpc_join() -> None:
            await anonymous.rooms.join(room.slug, display_name="Guest")

        async def rest_join() -> None:
            (await http.post(f"/v1/rooms/{room.slug}:join", json={"displayName": "Guest"})).raise_for_status()

        async def envoy_join() -> None:
            (await envoy.post(f"/v1/rooms/{room.slug}:join", json={"displayName": "Guest"})).raise_for_status()

        workloads: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("get room / gRPC", grpc_get),
            ("get room / REST", rest_get),
            ("get room / REST via Envoy", envoy_get),
            ("join / gRPC", grpc_join),
            ("join / REST", rest_join),
            ("join / REST via Envoy", envoy_join),
        ]
        if envoy_url is None:
            workloads = [(name, call) for name, call in workloads if "Envoy" not in name]
        results = []
        cpu: dict[str, dict[str, float]] = {}  # workload -> process -> CPU ms per call
        for name, call in workloads:
            await _drive(call, seconds=min(1.0, seconds / 4), concurrency=concurrency)
            before = {p: cpu_seconds(pid) for p, pid in pids.items()} | {"load generator": time.process_time()}
            calls, latencies = await _drive(call, seconds=seconds, concurrency=concurrency)
            after = {p: cpu_seconds(pid) for p, pid in pids.items()} | {"load generator": time.process_time()}
            cpu[name] = {p: (after[p] - before[p]) * 1000 / calls for p in before}
            results.append(Result("gateway", name, calls, seconds, latencies))
            print(f"  {name:<26} {calls / seconds:8.0f} calls/s", file=sys.stderr)
        return results, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    grpc_target, http_port, envoy_port = f"127.0.0.1:{_free_port()}", _free_port(), _free_port()
    with _database("postgresql") as url:
        control_env = {
            "PARLEY_DATABASE_URL": url,
            "PARLEY_TOKEN_SECRET": secrets.token_urlsafe(40),
            "PARLEY_DEV_LOGIN": "1",
            "PARLEY_GRPC_ADDRESS": grpc_target,
        }
        gateway_env = {
            "PARLEY_CONTROL_TARGET": grpc_target,
            "PARLEY_SESSION_SECRET": secrets.token_urlsafe(40),
            "PARLEY_HTTP_ADDRESS": f"127.0.0.1:{http_port}",
        }
        with (
            _process("control", control_env) as control_pid,
            _process("gateway", gateway_env) as gateway_pid,
            ExitStack() as stack,
        ):
            pids = {"control": control_pid, "gateway": gateway_pid}
            envoy_url: str | None = f"http://127.0.0.1:{envoy_port}"
            try:
                pids["envoy"] = stack.enter_context(envoy_transcoder(grpc_target, envoy_port))
            except EnvoyUnavailable as error:
                print(f"Envoy rows skipped: {error}", file=sys.stderr)
                envoy_url = None
            results, cpu = asyncio.run(
                _run(
                    grpc_target,
                    f"http://127.0.0.1:{http_port}",
                    envoy_url,
                    pids,
                    seconds=args.seconds,
                    concurrency=args.concurrency,
                )
            )
    print(
        f"\nREST facade vs direct gRPC, PostgreSQL, {args.concurrency} calls in flight, {args.seconds:.0f} s each, "
        f"{os.cpu_count()} CPUs shared by control, gateway, Envoy and the load generator"
    )
    print(
        f"{'workload':<28}{'calls/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        "   CPU ms per call: control  gateway    envoy  load gen"
    )
    for r in results:
        c = cpu[r.workload]
        envoy_ms = f"{c['envoy']:>9.2f}" if "envoy" in c else f"{'-':>9}"
        print(
            f"{r.workload:<28}{r.rate:>9.0f}{statistics.median(r.latencies_ms):>9.2f}{r.percentile(0.99):>9.2f}"
            f"{c['control']:>26.2f}{c['gateway']:>9.2f}{envoy_ms}"
            f"{c['load generator']:>10.2f}"
        )
    by_name = {r.workload: r for r in results}
    for call in ("get room", "join"):
        for path, proxy in (("REST", "gateway"), ("REST via Envoy", "envoy")):
            if f"{call} / {path}" not in by_name:
                continue
            ratio = by_name[f"{call} / {path}"].rate / by_name[f"{call} / gRPC"].rate
            rest, direct = cpu[f"{call} / {path}"], cpu[f"{call} / gRPC"]
            server_ratio = (rest["control"] + rest[proxy]) / direct["control"]
            print(
                f"{call}: {path}/gRPC throughput {ratio:.2f}x on this shared machine; server-side CPU per call "
                f"(control + {proxy}) / control = {server_ratio:.2f}x"
            )


if __name__ == "__main__":
    main()
