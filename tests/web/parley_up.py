"""``parley up`` in a process of its own, for the web app's browser tests and bench/web_bench.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_parley_up(data_dir: Path, *, recording: bool = False) -> Iterator[str]:
    """``parley up`` on free ports (without the AI service; without the egress service unless
    ``recording``), its URL while it runs. Raises RuntimeError when it does not come up."""
    port = _free_port()
    command = [sys.executable, "-c", "from launcher import main; main()", "up", "--data-dir", str(data_dir)]
    command += ["--http-port", str(port), "--grpc-port", "0", "--sfu-port", "0", "--ai-port", "0", "--egress-port", "0"]
    command += ["--turn-port", "0"]
    command += ["--no-ai"] + ([] if recording else ["--no-recording"])
    log_path = data_dir / "parley-up.log"
    with (
        log_path.open("wb") as log,
        subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT) as process,
    ):
        url = f"http://127.0.0.1:{port}"
        try:
            # A local Ray for the egress service takes a while to come up on a small machine.
            deadline = time.monotonic() + (120 if recording else 60)
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"parley up ended early:\n{log_path.read_text()[-3000:]}")
                try:
                    if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"parley up did not serve in time:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.3)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
