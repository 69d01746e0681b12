"""`python -m control keys ...`: an operator's first API key, made on an empty database (real
PostgreSQL and SQLite) by the management command in its own process, then used with the SDK."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest

from control import ControlServer, ControlSettings
from parley import Client, ParleyError

from .conftest import TOKEN_SECRET, fresh_pg_database


@pytest.fixture(params=["postgresql", "sqlite"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a database that does not hold a table yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'control.db'}"
        return
    with fresh_pg_database("parley_manage") as url:
        yield url


def manage(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m control <args>`` with only the database configured, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env["PARLEY_DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "control", *args], env=env, capture_output=True, text=True, timeout=120
    )


def tables(database_url: str) -> set[str]:
    if database_url.startswith("sqlite:///"):
        path = Path(database_url.removeprefix("sqlite:///"))
        if not path.exists():
            return set()
        with sqlite3.connect(path) as conn:
            return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows}


async def test_first_key_on_an_empty_database_works_with_the_sdk(empty_database: str) -> None:
    created = manage(
        empty_database, "keys", "create", "--name", "ops", "--scope", "rooms:create", "--scope", "keys:manage"
    )
    assert created.returncode == 0, created.stderr
    printed = dict(line.split("=", 1) for line in created.stdout.splitlines())
    assert set(printed) == {"PARLEY_API_KEY", "PARLEY_API_SECRET"}
    key_id, secret = printed["PARLEY_API_KEY"], printed["PARLEY_API_SECRET"]
    assert key_id.startswith("pk_") and secret.startswith("sk_")
    assert "shown this once" in created.stderr

    settings = ControlSettings(database_url=empty_database, token_secret=TOKEN_SECRET)
    async with ControlServer(settings) as server, Client(server.target, bearer=f"{key_id}.{secret}") as client:
        room = await client.rooms.create(display_name="First meeting")
        assert room.display_name == "First meeting"
        keys = [key async for key in client.api_keys.list()]
        assert [(k.name, list(k.scopes), k.display_name) for k in keys] == [
            (f"apiKeys/{key_id}", ["rooms:create", "keys:manage"], "ops")
        ]

        listed = await asyncio.to_thread(manage, empty_database, "keys", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        (only,) = json.loads(listed.stdout)
        assert only["id"] == key_id and only["scopes"] == ["rooms:create", "keys:manage"]
        assert "secret" not in only and secret not in listed.stdout

        revoked = await asyncio.to_thread(manage, empty_database, "keys", "revoke", key_id)
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(ParleyError) as refused:
            await client.rooms.create(display_name="After revocation")
        assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_a_bad_scope_is_refused_and_writes_nothing(empty_database: str) -> None:
    refused = manage(empty_database, "keys", "create", "--name", "ops", "--scope", "rooms:read", "--scope", "rooms:all")
    assert refused.returncode == 2
    assert "unknown scope 'rooms:all'" in refused.stderr and "keys:manage" in refused.stderr
    assert refused.stdout == ""
    assert tables(empty_database) == set()  # not even migrated


def test_json_output_and_duplicate_scopes(empty_database: str) -> None:
    created = manage(
        empty_database, "keys", "create", "--name", "bot", "--scope", "rooms:read", "--scope", "rooms:read", "--json"
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["id"].startswith("pk_") and key["secret"].startswith("sk_") and key["scopes"] == ["rooms:read"]
    assert key["create_time"].endswith("+00:00")


def test_errors_name_what_is_wrong(empty_database: str, tmp_path: Path) -> None:
    missing = manage(empty_database, "keys", "revoke", "pk_0000")
    assert missing.returncode == 1 and "pk_0000 not found" in missing.stderr
    too_long = manage(empty_database, "keys", "create", "--name", "x" * 201, "--scope", "rooms:read")
    assert too_long.returncode == 2 and "display_name" in too_long.stderr
    no_scope = manage(empty_database, "keys", "create", "--name", "ops")
    assert no_scope.returncode == 2 and "--scope" in no_scope.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    unset = subprocess.run(
        [sys.executable, "-m", "control", "keys", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert unset.returncode == 1 and "PARLEY_DATABASE_URL" in unset.stderr
