"""Room accesses: the roles users hold on a room, granted, changed and given up; a room keeps
at least one owner."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from parley.control.v1 import resources_pb2 as res
from parley.server import decode_page_token, encode_page_token
from parley.server import page_size as page_size_of

from . import _mapper, _policy
from ._auth import Principal
from ._domain import Page, UseCases, new_id, utcnow
from ._errors import AlreadyExists, FailedPrecondition, NotFound, PermissionDenied
from ._models import Role, RoomAccessRow, RoomRow, UserRow
from ._repos import Accesses, Users


class AccessUseCases(UseCases):
    async def create_access(
        self, caller: Principal, id_or_slug: str, user: str, role: res.Role.ValueType
    ) -> tuple[RoomAccessRow, UserRow]:
        role_name = _mapper.ROLE_NAMES[role]
        async with self._writes.begin() as session:
            room = await self._room(session, id_or_slug, for_update=True)
            mine = await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
            if role_name == Role.OWNER and not _policy.may_manage_owners(mine):
                raise PermissionDenied("only owners grant the owner role")
            target = await Users(session).get(user.removeprefix("users/"))
            if target is None:
                raise NotFound(f"{user} not found")
            accesses = Accesses(session)
            if await accesses.of_user(room.id, target.id) is not None:
                raise AlreadyExists(f"{user} already holds a role on this room; update it instead")
            row = RoomAccessRow(id=new_id(), room_id=room.id, user_id=target.id, role=role_name, created_at=utcnow())
            accesses.add(row)
            return row, target

    async def list_accesses(
        self, caller: Principal, id_or_slug: str, *, page_size: int, page_token: str
    ) -> tuple[Page[tuple[RoomAccessRow, UserRow]], RoomRow]:
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_role(session, room, caller, at_least=Role.MEMBER, scope="rooms:read")
            scope = f"accesses|{room.id}"
            size = page_size_of(page_size)
            rows = await Accesses(session).page(
                room.id, after=decode_page_token(page_token, scope=scope), limit=size + 1
            )
        more = len(rows) > size
        rows = rows[:size]
        token = encode_page_token(rows[-1][0].created_at, rows[-1][0].id, scope=scope) if more else ""
        return Page(rows, token), room

    async def _access_for_change(
        self, session: AsyncSession, caller: Principal, id_or_slug: str, access_id: str
    ) -> tuple[RoomAccessRow, Role | None]:
        room = await self._room(session, id_or_slug, for_update=True)
        row = await Accesses(session).get(room.id, access_id)
        if row is None:
            raise NotFound("room access not found")
        if caller.is_user and row.user_id == caller.user_id:
            return row, row.role  # giving up or lowering one's own role
        mine = await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
        if row.role == Role.OWNER and not _policy.may_manage_owners(mine):
            raise PermissionDenied("only owners change or remove owners")
        return row, mine

    async def _keep_an_owner(self, session: AsyncSession, row: RoomAccessRow) -> None:
        if row.role == Role.OWNER and await Accesses(session).count_owners(row.room_id) <= 1:
            raise FailedPrecondition(
                "a room keeps at least one owner; make someone else owner first", reason="LAST_OWNER"
            )

    async def update_access(
        self, caller: Principal, id_or_slug: str, access_id: str, role: res.Role.ValueType
    ) -> tuple[RoomAccessRow, UserRow]:
        role_name = _mapper.ROLE_NAMES[role]
        async with self._writes.begin() as session:
            row, mine = await self._access_for_change(session, caller, id_or_slug, access_id)
            if role_name == row.role:
                pass
            elif caller.is_user and row.user_id == caller.user_id and _policy.is_promotion(row.role, role_name):
                raise PermissionDenied("users cannot raise their own role")
            elif role_name == Role.OWNER and not _policy.may_manage_owners(mine):
                raise PermissionDenied("only owners grant the owner role")
            else:
                await self._keep_an_owner(session, row)
                row.role = role_name
            owner = await Users(session).get(row.user_id)
            assert owner is not None  # the foreign key guarantees it
            return row, owner

    async def delete_access(self, caller: Principal, id_or_slug: str, access_id: str) -> None:
        async with self._writes.begin() as session:
            row, _ = await self._access_for_change(session, caller, id_or_slug, access_id)
            await self._keep_an_owner(session, row)
            await Accesses(session).delete(row)
