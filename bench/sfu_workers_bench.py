"""SFU workers: the same meetings through one SFU process and through W worker processes
(``python -m sfu`` with ``PARLEY_SFU_WORKERS``), side by side in one run. R rooms, each with one
pre-encoded publisher (640×480 VP8 + Opus, as ``bench.sfu_bench``) and S subscribers that count
packets without decoding; rooms are placed by the node registry (in the Redis of ``--redis-url``,
default ``PARLEY_REDIS_URL`` or the machine's, under a key prefix of the run's own, deleted
after), and each room's clients connect to its node, as control would send them.

    python -m bench.sfu_workers_bench [--workers 2] [--rooms 4] [--subscribers 3] [--seconds 10] [--repeat 2]

Prints per configuration: the SFU's CPU (its processes summed, % of one core), the busiest
process's CPU, forwarded packets/s, packets per core, video fps per subscriber and rooms per
worker; then W workers / one process, from the means of ``--repeat`` pairs of runs, alternating
which goes first. The clients run in this one process, so this measures
what spreading costs and how the load divides, not the capacity gained: on a machine with no
cores to spare beyond the workers and clients, more workers cannot forward more.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as redis

from bench._sfu_servers import BENCH_SECRET
from bench.sfu_bench import _inbound_packets, _ParleyClients
from parley._loadtest import child_pids, process_cpu_seconds
from parley.sfu_registry import SfuRegistry


@dataclass
class Result:
    workers: int
    cpu: float  # the SFU's processes together, fraction of one core
    busiest: float  # the busiest of them
    packets_per_second: float
    fps: float
    rooms_per_worker: list[int]

    @property
    def per_core(self) -> float:
        return self.packets_per_second / self.cpu if self.cpu else float("nan")


def _cpu(pids: list[int]) -> list[float]:
    return [process_cpu_seconds(pid) for pid in pids]


async def _nodes(client: redis.Redis, prefix: str, count: int) -> None:
    """Waits until ``count`` nodes are registered under ``prefix``."""
    for _ in range(600):
        members = await client.zrange(f"{prefix}:rooms", 0, -1)
        alive = [m for m in members if await client.exists(f"{prefix}:node:{m!s}")]
        if len(alive) >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{count} SFU nodes did not register")


async def measure(workers: int, rooms: int, subscribers: int, seconds: float, redis_url: str) -> Result:
    prefix = f"bench-workers:{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "PARLEY_SFU_WORKERS": str(workers),
        "PARLEY_REDIS_URL": redis_url,
        "PARLEY_SFU_REGISTRY_PREFIX": prefix,
        "PARLEY_SFU_TOKEN_SECRETS": f"bench={BENCH_SECRET}",
        "PARLEY_SFU_GRPC_ADDRESS": "127.0.0.1:0",
        "PARLEY_METRICS_ADDRESS": "",
        "PARLEY_LOG_LEVEL": "WARNING",
    }
    server = subprocess.Popen([sys.executable, "-m", "sfu"], env=env)  # noqa: ASYNC220 (once per run)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    registry = SfuRegistry(redis_url, prefix=prefix)
    clients: list[_ParleyClients] = []
    try:
        await _nodes(client, prefix, workers)
        placed = {f"room-{i}": await registry.assign(f"room-{i}") for i in range(rooms)}
        for room, node in placed.items():
            meeting = _ParleyClients(node.url, room)
            clients.append(meeting)
            await meeting.start(subscribers)
        pids = [server.pid, *child_pids(server.pid)]
        pcs = [pc for meeting in clients for pc in meeting.subscriber_pcs]
        await asyncio.sleep(3)  # connect, first keyframes
        packets0, video0, cpu0, t0 = (
            await _inbound_packets(pcs),
            sum(c.frames for m in clients for c in m.video),
            _cpu(pids),
            time.monotonic(),
        )
        await asyncio.sleep(seconds)
        packets1, video1, cpu1, t1 = (
            await _inbound_packets(pcs),
            sum(c.frames for m in clients for c in m.video),
            _cpu(pids),
            time.monotonic(),
        )
    finally:
        for meeting in clients:
            await meeting.close()
        server.terminate()
        await asyncio.to_thread(server.wait, 60)
        await registry.aclose()
        keys = [key async for key in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    elapsed = t1 - t0
    used = [(b - a) / elapsed for a, b in zip(cpu0, cpu1, strict=True)]
    return Result(
        workers=workers,
        cpu=sum(used),
        busiest=max(used),
        packets_per_second=(packets1 - packets0) / elapsed,
        fps=(video1 - video0) / elapsed / (rooms * subscribers),
        rooms_per_worker=sorted(Counter(node.id for node in placed.values()).values(), reverse=True),
    )


def _print(results: list[Result], rooms: int, subscribers: int) -> None:
    print(f"{rooms} rooms x (1 publisher + {subscribers} subscribers), in the order run")
    print("| SFU | CPU % of a core | busiest process % | forwarded pkt/s | pkt/s per core | video fps/sub | rooms |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        name = "one process" if r.workers == 1 else f"{r.workers} workers"
        print(
            f"| {name} | {100 * r.cpu:.1f} | {100 * r.busiest:.1f} | {r.packets_per_second:.0f} "
            f"| {r.per_core:.0f} | {r.fps:.1f} | {'+'.join(map(str, r.rooms_per_worker))} |"
        )
    one = [r for r in results if r.workers == 1]
    many = [r for r in results if r.workers > 1]

    def mean(rows: list[Result], value: Callable[[Result], float]) -> float:
        return statistics.fmean(value(r) for r in rows)

    print(
        f"{many[0].workers} workers / one process (means of {len(one)} runs each): packets per core "
        f"{mean(many, lambda r: r.per_core) / mean(one, lambda r: r.per_core):.2f}, busiest process's CPU "
        f"{mean(many, lambda r: r.busiest) / mean(one, lambda r: r.busiest):.2f}, forwarded packets "
        f"{mean(many, lambda r: r.packets_per_second) / mean(one, lambda r: r.packets_per_second):.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers to compare with one process")
    parser.add_argument("--rooms", type=int, default=4)
    parser.add_argument("--subscribers", type=int, default=3, help="per room (the clients share one core)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per configuration")
    parser.add_argument("--repeat", type=int, default=2, help="pairs of runs, alternating which goes first")
    parser.add_argument("--redis-url", default=os.environ.get("PARLEY_REDIS_URL", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    results = []
    for run in range(args.repeat):  # alternating, so that neither configuration always runs first
        for workers in (1, args.workers) if run % 2 == 0 else (args.workers, 1):
            results.append(await measure(workers, args.rooms, args.subscribers, args.seconds, args.redis_url))
    _print(results, args.rooms, args.subscribers)


if __name__ == "__main__":
    asyncio.run(main())
