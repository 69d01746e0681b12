"""Chromium in the SFU's tests: the meeting page (gateway/static/meet.html, on the TypeScript
SDK's bundle) opened by tests/browser/meet.mjs, which reports what the page does as JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from gateway import GatewayServer, GatewaySettings

BROWSER_DIR = Path(__file__).resolve().parents[1] / "browser"
SDK_DIR = Path(__file__).resolve().parents[2] / "sdk" / "typescript"


async def build_sdk_bundle() -> None:
    """The page's room client, built from this checkout's SDK sources (esbuild: well under a second)."""
    assert (SDK_DIR / "node_modules").exists(), "run ./scripts/setup (npm ci in sdk/typescript)"
    build = await asyncio.create_subprocess_exec(
        "npm", "run", "--silent", "build", cwd=SDK_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(build.communicate(), 120)
    assert build.returncode == 0, output.decode()


@contextlib.asynccontextmanager
async def gateway_for(sfu_target: str) -> AsyncIterator[GatewayServer]:
    """A gateway serving the meeting page and bridging its signal socket to ``sfu_target``."""
    settings = GatewaySettings(
        control_target="127.0.0.1:9",  # not called here
        session_secret="browser-test-session-secret-" + "z" * 32,
        sfu_target=sfu_target,
        secure_cookies=False,
    )
    async with GatewayServer(settings, extra_routes=[]) as server:
        yield server


async def open_page(url: str, *, chromium_args: str = "") -> asyncio.subprocess.Process:
    """meet.mjs on ``url``; its stdin takes commands, its stdout gives events (``read_event``)."""
    env = {**os.environ, "CHROMIUM_EXTRA_ARGS": chromium_args} if chromium_args else None
    return await asyncio.create_subprocess_exec(
        "node", "meet.mjs", url, cwd=BROWSER_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env
    )


async def read_event(process: asyncio.subprocess.Process, within: float = 60) -> dict[str, Any]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), within)
    assert line, "the browser script ended early (see its stderr above)"
    event: dict[str, Any] = json.loads(line)
    return event


async def close_page(process: asyncio.subprocess.Process) -> None:
    """Closes the page as its tab would be (the page leaves), then the browser."""
    if process.stdin is not None:
        process.stdin.close()
    await asyncio.wait_for(process.wait(), 30)
