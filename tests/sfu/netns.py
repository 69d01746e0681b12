"""A subscriber on a link of its own: a network namespace joined to this one by a veth pair,
whose downlink (this side's end) can be rate-limited with ``tc``, and a bot (netns_bot.py)
run inside it. For test_throttled.py and bench/throttle_bench.py; needs root and iproute2."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

#: This side's address on the veth pair (where the SFU listens), and the namespace's.
HOST_ADDRESS = "10.214.0.1"
BOT_ADDRESS = "10.214.0.2"
REPO = Path(__file__).resolve().parents[2]


class CannotMakeNamespace(RuntimeError):
    """Not root, no iproute2 or tc, or the kernel refused."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@contextlib.contextmanager
def namespace() -> Iterator[tuple[str, str]]:
    """A network namespace joined to this one by a veth pair: (its name, this side's device)."""
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
        raise CannotMakeNamespace("needs root, iproute2 and tc to make a network namespace")
    name, device = f"parley-t{os.getpid()}", f"pt{os.getpid() % 100000}"
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as error:
        raise CannotMakeNamespace(f"cannot make a network namespace: {error.stderr.decode().strip()}") from None
    try:
        _ip("link", "add", device, "type", "veth", "peer", "name", "bot0", "netns", name)
        _ip("addr", "add", f"{HOST_ADDRESS}/24", "dev", device)
        _ip("link", "set", device, "up")
        _ip("-n", name, "addr", "add", f"{BOT_ADDRESS}/24", "dev", "bot0")
        _ip("-n", name, "link", "set", "bot0", "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield name, device
    finally:
        subprocess.run(["ip", "link", "del", device], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


class Link:
    """The downlink into the namespace: a token-bucket limit on this side's veth."""

    def __init__(self, device: str) -> None:
        self.device = device

    def limit(self, bits_per_second: int) -> None:
        # A 200 ms queue: the subscriber's delay-based estimate sees it fill before it drops.
        bucket = ("rate", f"{bits_per_second}bit", "burst", "16kb", "latency", "200ms")
        subprocess.run(["tc", "qdisc", "replace", "dev", self.device, "root", "tbf", *bucket], check=True)

    def lift(self) -> None:
        subprocess.run(["tc", "qdisc", "del", "dev", self.device, "root"], check=False, capture_output=True)

    def counters(self) -> tuple[int, int, int]:
        """(bytes, packets, packets dropped) through the limit so far."""
        shown = subprocess.run(["tc", "-s", "qdisc", "show", "dev", self.device], capture_output=True, text=True)
        found = re.search(r"Sent (\d+) bytes (\d+) pkt \(dropped (\d+)", shown.stdout)
        assert found is not None, shown.stdout
        sent, packets, dropped = (int(x) for x in found.groups())
        return sent, packets, dropped


@contextlib.asynccontextmanager
async def bot_in(netns: str, target: str, token: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """netns_bot.py in the namespace, joined with ``token``; stopped (its stdin closed) after."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'sdk'}"}
    bot = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", netns, sys.executable, str(Path(__file__).with_name("netns_bot.py")), target, token,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    try:
        yield bot
    finally:
        if bot.stdin is not None:
            bot.stdin.close()
        try:
            await asyncio.wait_for(bot.wait(), 10)
        except TimeoutError:
            bot.kill()
            await bot.wait()
