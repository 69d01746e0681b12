"""The TypeScript SDK (``sdk/typescript``): it type-checks (strict), its unit tests pass
(vitest: error mapping, event routing, reconnection), and its REST client works against a real
gateway in front of a real control server."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from gateway import GatewayServer

PACKAGE = Path(__file__).resolve().parent.parent / "sdk" / "typescript"
BIN = PACKAGE / "node_modules" / ".bin"


async def _run(*cmd: str, env: dict[str, str] | None = None) -> None:
    assert (BIN / "vitest").exists(), "sdk/typescript/node_modules is missing: run ./scripts/setup"
    process = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=PACKAGE,
        env={**os.environ, **(env or {}), "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode == 0, output.decode(errors="replace")


async def test_the_sdk_type_checks() -> None:
    await _run(str(BIN / "tsc"), "--noEmit", "-p", ".")


async def test_unit_tests() -> None:
    await _run(str(BIN / "vitest"), "run", "test/unit")


async def test_rest_client_on_a_real_gateway(gateway: GatewayServer) -> None:
    await _run(str(BIN / "vitest"), "run", "test/integration/rest.test.ts", env={"PARLEY_GATEWAY_URL": gateway.url})
