"""A real S3 API for tests: moto's standalone server, spoken to over HTTP like any S3-compatible
store, and a boto3 client for it. The fixtures in ``tests/conftest.py`` wrap these helpers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

MOTO_SERVER = Path(sys.executable).with_name("moto_server")
_LISTENING = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")


@contextmanager
def moto_server(log_path: Path) -> Iterator[str]:
    """Runs a moto S3 server while the block runs; yields its URL (``http://127.0.0.1:PORT``)."""
    # Port 0 lets the OS pick a free port (no race with other test sessions); the server prints
    # the URL it listens on. Its output goes to a file: a pipe nobody drains would fill up with
    # request logs and stall the server.
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(MOTO_SERVER), "-H", "127.0.0.1", "-p", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
        )
    try:
        yield _wait_for_endpoint(process, log_path, timeout=30.0)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_client(endpoint: str) -> S3Client:
    """A boto3 S3 client for a moto server (dummy credentials, us-east-1)."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


def _wait_for_endpoint(process: subprocess.Popen[bytes], log_path: Path, *, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    endpoint = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited ({process.returncode}): {log_path.read_text(errors='replace')}")
        if endpoint is None:
            match = _LISTENING.search(log_path.read_text(errors="replace"))
            endpoint = match.group(1) if match else None
        if endpoint is not None:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    return endpoint
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer within {timeout} s: {log_path.read_text(errors='replace')}")
