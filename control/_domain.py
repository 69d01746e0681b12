"""What the control plane's use cases share: the database sessions, the room lookup and role
check that most of them start with, new row ids and the clock, and pages of rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from parley.server import encode_page_token
from parley.server.db import Sessions

from . import _policy
from ._auth import Principal
from ._errors import NotFound, PermissionDenied
from ._models import ApiKeyRow, LobbyEntryRow, RecordingRow, Role, RoomRow, WebhookRow
from ._repos import Accesses, Rooms
from ._settings import ControlSettings


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


T = TypeVar("T")
R = TypeVar("R", RoomRow, LobbyEntryRow, ApiKeyRow, WebhookRow, RecordingRow)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


def page_of(rows: list[R], size: int, scope: str) -> Page[R]:
    """The first ``size`` of ``rows`` (fetched one more than a page, to know whether more follow)."""
    if len(rows) <= size:
        return Page(rows, "")
    rows = rows[:size]
    return Page(rows, encode_page_token(rows[-1].created_at, rows[-1].id, scope=scope))


class UseCases:
    """Base of the use-case classes: each method runs one transaction and returns rows."""

    def __init__(self, settings: ControlSettings, sessions: Sessions) -> None:
        self.settings = settings
        # Reads and writes open different transactions (on SQLite, only writes take the lock).
        self._reads = sessions.reads
        self._writes = sessions.writes

    async def _room(self, session: AsyncSession, id_or_slug: str, *, for_update: bool = False) -> RoomRow:
        row = await Rooms(session).find(id_or_slug, for_update=for_update)
        if row is None:
            raise NotFound(f"room {id_or_slug!r} not found")
        return row

    async def _role(self, session: AsyncSession, room: RoomRow, caller: Principal) -> Role | None:
        if not caller.is_user:
            return None
        return await Accesses(session).role_of(room.id, caller.user_id)

    async def _require_role(
        self, session: AsyncSession, room: RoomRow, caller: Principal, *, at_least: Role, scope: str
    ) -> Role | None:
        """Allows API keys holding ``scope`` and users ranking at least ``at_least``."""
        if caller.is_api_key:
            caller.require_scope(scope)
            return None
        caller.require_authenticated()
        role = await self._role(session, room, caller)
        if not _policy.ranks_at_least(role, at_least):
            raise PermissionDenied(f"needs the {at_least} role on this room")
        return role
