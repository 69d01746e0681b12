"""A private network namespace for a benchmark run: Janus gathers no ICE candidates on
loopback, and a benchmark must not use the machine's own interfaces, so the run re-executes
itself inside a namespace of its own with a veth pair (two addresses of a private network),
deleted when it ends. Needs root and iproute2."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

#: Set inside the namespace: the run does not re-execute again.
INSIDE = "PARLEY_BENCH_NETNS"


def run_inside(module: str) -> None:
    """Re-executes ``python -m module`` with this process's arguments inside a new network
    namespace and exits with its status; returns at once when already inside one."""
    if os.environ.get(INSIDE):
        return
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise SystemExit("this benchmark runs in a private network namespace: run it as root, with iproute2")
    name = f"parley-bench-{os.getpid()}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "set", "lo", "up")
        ip("-n", name, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        for device, address in (("v0", "10.213.0.1/24"), ("v1", "10.213.0.2/24")):
            ip("-n", name, "addr", "add", address, "dev", device)
            ip("-n", name, "link", "set", device, "up")
        status = subprocess.call(
            ["ip", "netns", "exec", name, sys.executable, "-m", module, *sys.argv[1:]],
            env={**os.environ, INSIDE: name},
        )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    raise SystemExit(status)
