"""`parley.testing`: a user's test starts a real Parley (control and an SFU node in their own
processes), uses it through the SDK and a bot, and leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from parley import VideoGrants, verify_join_token
from parley.room import Room
from parley.testing import ParleyTestEnvironment, ParleyTestEnvironmentError, _Service, _stop


def _services_running() -> list[str]:
    """Command lines of this process's children that run a Parley service (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == os.getpid() and (" -m control" in command or " -m sfu" in command):
            found.append(command)
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_room_a_bot_and_a_clean_end() -> None:
    async with await ParleyTestEnvironment.start() as env:
        pids, folder = env.pids, env.folder
        assert set(pids) == {"control", "sfu"} and folder.is_dir()
        assert len(_services_running()) == 2
        room = await env.client.rooms.create(display_name="Stand-up")
        assert [r.name async for r in env.client.rooms.list()] == [room.name]

        # A token minted locally and one from control both let a bot in.
        token = env.join_token(room, "bot-1", name="Bot one")
        claims = verify_join_token(token, secrets={env.token_key_id: env.token_secret})
        assert claims.grants.room == room.name.removeprefix("rooms/")
        async with await Room.connect(env.sfu_url, token) as bot:
            grant = await env.client.rooms.create_join_token(room.name, identity="bot-2")
            assert grant.sfu_url == env.sfu_url
            async with await Room.connect(grant.sfu_url, grant.token):
                joined = await bot.wait_for("participant_joined")
                assert joined.participant is not None and joined.participant.identity == "bot-2"

        # Grants are the caller's: a subscriber-only token cannot publish.
        watcher = env.join_token(room.name, "watcher", grants=VideoGrants(room="ignored", can_publish=False))
        assert verify_join_token(watcher, secrets={"parley": env.token_secret}).grants.can_publish is False

        # The dev login is on, for tests acting as people.
        login = await env.client.with_bearer("").users.dev_login("alice")
        assert login.access_token

    assert all(_gone(pid) for pid in pids.values()), pids
    assert _services_running() == []
    assert not folder.exists()
    await env.shutdown()  # idempotent


async def test_a_given_folder_is_kept_with_the_logs(tmp_path: Path) -> None:
    async with await ParleyTestEnvironment.start(folder=tmp_path / "env", env={"PARLEY_LOG_LEVEL": "DEBUG"}) as env:
        await env.client.rooms.create(display_name="Kept")
    assert (tmp_path / "env" / "control.db").exists()
    assert "CreateRoom" in (tmp_path / "env" / "control.log").read_text()
    assert (tmp_path / "env" / "sfu.log").exists()


async def test_a_service_that_cannot_start_says_why(tmp_path: Path) -> None:
    with pytest.raises(ParleyTestEnvironmentError) as failed:
        await ParleyTestEnvironment.start(folder=tmp_path, env={"PARLEY_SFU_MAX_PARTICIPANTS": "many"})
    assert "sfu exited" in str(failed.value) and "many" in str(failed.value)
    assert _services_running() == []  # control, started beside it, was stopped too


def _deaf_to_sigterm(ready: Path) -> subprocess.Popen[bytes]:
    code = "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    code += "pathlib.Path(sys.argv[1]).touch(); time.sleep(60)"
    return subprocess.Popen([sys.executable, "-c", code, str(ready)])


async def test_a_service_deaf_to_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    deaf = _deaf_to_sigterm(ready)
    while not ready.exists():  # its SIGTERM handler is in place
        await asyncio.sleep(0.05)
    await _stop([_Service("deaf", deaf, tmp_path / "deaf.log")], grace=0.5)
    assert deaf.returncode == -signal.SIGKILL
