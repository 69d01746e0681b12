"""Management commands that work on control's database directly, for operators (in the manner
of Django's ``createsuperuser``): the first API key of an empty database comes from here.

    python -m control keys create --name ops --scope keys:manage --scope rooms:create
    python -m control keys list
    python -m control keys revoke pk_...

Settings come from the same ``PARLEY_*`` variables as the server (``PARLEY_DATABASE_URL`` is the
one that matters); the schema is migrated first, as the server does at start. Keys are made by
the control plane's own use cases (``ControlPlane.create_api_key``), with the caller being the
operator rather than an API key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.exc import DBAPIError

from parley.control.v1 import api_key_service_pb2 as keys_pb
from parley.control.v1 import resources_pb2 as res
from parley.server import db, field_violations

from ._errors import ControlError
from ._models import ApiKeyRow, migrate
from ._policy import ALL_SCOPES
from ._repos import aware
from ._service import ControlPlane
from ._settings import ConfigurationError, ControlSettings


class _CommandError(Exception):
    """Ends the command with its message on stderr and exit status 1."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m control",
        description="Serve Parley's control plane (the default), or manage its database directly.",
        epilog="Settings come from PARLEY_* variables, as for the server (PARLEY_DATABASE_URL, ...).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="serve the control plane over gRPC (the default)")
    keys = commands.add_parser("keys", help="create, list and revoke API keys").add_subparsers(
        dest="action", metavar="ACTION", required=True
    )
    create = keys.add_parser("create", help="create an API key and print its secret (shown once)")
    create.add_argument("--name", required=True, help="what the key is for, e.g. 'ops'")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        metavar="SCOPE",
        help=f"a scope to grant; repeat for several. One of: {', '.join(ALL_SCOPES)}",
    )
    create.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    create.set_defaults(parser=create)
    listing = keys.add_parser("list", help="list API keys (never their secrets)")
    listing.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    revoke = keys.add_parser("revoke", help="revoke (delete) an API key")
    revoke.add_argument("key_id", metavar="ID", help="the key id, pk_...")
    return parser


@asynccontextmanager
async def _control(env: Mapping[str, str]) -> AsyncIterator[ControlPlane]:
    """The control plane over the configured database, migrated to the newest schema."""
    try:
        # These commands sign nothing and route nothing: the token secret and Redis are not
        # needed, so an operator may run them with the database URL alone.
        settings = ControlSettings.from_env(env, token_secret=secrets.token_urlsafe(48), redis_url="")
    except ConfigurationError as exc:
        raise _CommandError(str(exc)) from None
    engine = db.create_engine(settings.database_url)
    try:
        await migrate(engine)
        yield ControlPlane(settings, db.sessions(engine))
    finally:
        await engine.dispose()


def _key_dict(row: ApiKeyRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "display_name": row.display_name,
        "scopes": list(row.scopes),
        "create_time": aware(row.created_at).isoformat(),
    }


async def _create(env: Mapping[str, str], name: str, scopes: Sequence[str]) -> tuple[ApiKeyRow, str]:
    async with _control(env) as control:
        return await control.create_api_key(None, name, scopes)


async def _list(env: Mapping[str, str]) -> list[ApiKeyRow]:
    rows: list[ApiKeyRow] = []
    async with _control(env) as control:
        token = ""
        while True:
            page = await control.list_api_keys(None, page_size=0, page_token=token)
            rows.extend(page.items)
            token = page.next_page_token
            if not token:
                return rows


async def _revoke(env: Mapping[str, str], key_id: str) -> None:
    async with _control(env) as control:
        await control.delete_api_key(None, key_id)


def _checked_scopes(parser: argparse.ArgumentParser, name: str, given: Sequence[str]) -> list[str]:
    """The scopes asked for, once each, after the contract's rules (the server's own checks)."""
    unknown = [scope for scope in given if scope not in ALL_SCOPES]
    if unknown:
        parser.error(f"unknown scope {unknown[0]!r}: use one of {', '.join(ALL_SCOPES)}")
    scopes = list(dict.fromkeys(given))
    request = keys_pb.CreateApiKeyRequest(api_key=res.ApiKey(display_name=name, scopes=scopes))
    for field, description in field_violations(request):
        parser.error(f"{field.removeprefix('api_key.')}: {description}")
    return scopes


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """Runs one command (not ``serve``: ``python -m control`` serves itself); returns the exit status."""
    env = os.environ if env is None else env
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "keys":
        parser.print_help()
        return 2
    try:
        if args.action == "create":
            scopes = _checked_scopes(args.parser, args.name, args.scope)
            row, secret = asyncio.run(_create(env, args.name, scopes))
            if args.json:
                print(json.dumps({**_key_dict(row), "secret": secret}))
            else:
                print(f"PARLEY_API_KEY={row.id}\nPARLEY_API_SECRET={secret}")
                print("The secret is shown this once: keep it now.", file=sys.stderr)
        elif args.action == "list":
            rows = asyncio.run(_list(env))
            if args.json:
                print(json.dumps([_key_dict(row) for row in rows]))
            else:
                for row in rows:
                    print(f"{row.id:<30} {','.join(row.scopes):<60} {row.display_name}")
                if not rows:
                    print("no keys", file=sys.stderr)
        else:
            asyncio.run(_revoke(env, args.key_id))
            print(f"revoked {args.key_id}")
    except (_CommandError, ControlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"error: the database answered: {exc.orig}", file=sys.stderr)
        return 1
    return 0
