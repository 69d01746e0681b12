"""Rooms: creating them (with a meeting code), reading, listing, configuring and deleting."""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from parley.control.v1 import resources_pb2 as res
from parley.server import decode_page_token
from parley.server import page_size as page_size_of

from . import _filters, _mapper
from ._auth import Principal
from ._domain import Page, UseCases, new_id, page_of, utcnow
from ._errors import AlreadyExists, FailedPrecondition, InvalidArgument
from ._models import AccessLevel, Role, RoomAccessRow, RoomRow
from ._repos import Accesses, Rooms

_ALL_SOURCES = list(_mapper.SOURCES)
_SLUG_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _random_slug() -> str:
    """A meeting code like ``abc-defg-hij`` (26^10, about 1.4e14 codes)."""
    pick = secrets.choice
    return "-".join("".join(pick(_SLUG_LETTERS) for _ in range(n)) for n in (3, 4, 3))


class RoomUseCases(UseCases):
    async def create_room(self, caller: Principal, room: res.Room) -> RoomRow:
        if caller.is_api_key:
            caller.require_scope("rooms:create")
        else:
            caller.require_user()
        if room.slug and len(room.slug) == 32 and all(c in "0123456789abcdef" for c in room.slug):
            raise InvalidArgument.field("room.slug", "must not look like a room id (32 hex digits)")
        sources = (
            [_mapper.SOURCE_NAMES[s] for s in room.configuration.publish_sources]
            if room.HasField("configuration")
            else _ALL_SOURCES
        )
        level = _mapper.ACCESS_LEVEL_NAMES.get(room.access_level, AccessLevel.PUBLIC)
        for _attempt in range(5):
            now = utcnow()
            row = RoomRow(
                id=new_id(),
                slug=room.slug or _random_slug(),
                display_name=room.display_name.strip(),
                access_level=level,
                publish_sources=sources,
                everyone_can_mute=room.configuration.everyone_can_mute,
                version=1,
                created_at=now,
                updated_at=now,
            )
            try:
                async with self._writes.begin() as session:
                    Rooms(session).add(row)
                    await session.flush()
                    if caller.is_user:
                        Accesses(session).add(
                            RoomAccessRow(
                                id=new_id(), room_id=row.id, user_id=caller.user_id, role=Role.OWNER, created_at=now
                            )
                        )
                return row
            except IntegrityError as exc:
                if room.slug:
                    raise AlreadyExists(f"a room with slug {room.slug!r} exists") from exc
                # A generated slug collided: draw another.
        raise FailedPrecondition("could not find a free slug; try again")

    async def get_room(self, caller: Principal, id_or_slug: str) -> RoomRow:
        caller.require_scope("rooms:read")
        async with self._reads() as session:
            return await self._room(session, id_or_slug)

    async def list_rooms(self, caller: Principal, *, page_size: int, page_token: str, filter: str) -> Page[RoomRow]:
        if caller.is_api_key:
            caller.require_scope("rooms:list")
            member = None
        else:
            member = caller.require_user()
        conditions = _filters.parse(filter, {"access_level": _access_level_filter, "slug": str, "display_name": str})
        scope = f"rooms|{filter}|{member}"
        size = page_size_of(page_size)
        async with self._reads() as session:
            rows = await Rooms(session).page(
                member_user_id=member,
                conditions=conditions,
                after=decode_page_token(page_token, scope=scope),
                limit=size + 1,
            )
        return page_of(rows, size, scope)

    async def update_room(self, caller: Principal, room: res.Room, paths: Sequence[str]) -> RoomRow:
        id_or_slug = room.name.removeprefix("rooms/")
        async with self._writes.begin() as session:
            row = await self._room(session, id_or_slug, for_update=True)
            await self._require_role(session, row, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
            if room.etag and room.etag != _mapper.etag(row):
                raise FailedPrecondition("the room changed since it was read (etag mismatch)", reason="ETAG_MISMATCH")
            if "display_name" in paths:
                row.display_name = room.display_name.strip()
            if "access_level" in paths:
                if room.access_level == res.ACCESS_LEVEL_UNSPECIFIED:
                    raise InvalidArgument.field("room.access_level", "must be set when listed in update_mask")
                row.access_level = _mapper.ACCESS_LEVEL_NAMES[room.access_level]
            if "configuration" in paths or "configuration.publish_sources" in paths:
                row.publish_sources = [_mapper.SOURCE_NAMES[s] for s in room.configuration.publish_sources]
            if "configuration" in paths or "configuration.everyone_can_mute" in paths:
                row.everyone_can_mute = room.configuration.everyone_can_mute
            row.version += 1
            row.updated_at = utcnow()
            return row

    async def delete_room(self, caller: Principal, id_or_slug: str, etag: str) -> None:
        async with self._writes.begin() as session:
            row = await self._room(session, id_or_slug, for_update=True)
            await self._require_role(session, row, caller, at_least=Role.OWNER, scope="rooms:delete")
            if etag and etag != _mapper.etag(row):
                raise FailedPrecondition("the room changed since it was read (etag mismatch)", reason="ETAG_MISMATCH")
            await Rooms(session).delete(row)


def _access_level_filter(value: str) -> str:
    enum_value = res.AccessLevel.Value(value) if value in res.AccessLevel.keys() else None  # noqa: SIM118 (enum wrapper, not a dict)
    if enum_value is None or enum_value not in _mapper.ACCESS_LEVEL_NAMES:
        raise ValueError(f"unknown access level {value!r}")
    return _mapper.ACCESS_LEVEL_NAMES[enum_value]
