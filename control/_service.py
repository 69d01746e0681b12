"""The rules of the control plane: who may do what to rooms, roles, the lobby and API keys.

Servicers validate input and call these methods with the caller's ``Principal``; methods run
one transaction each and return rows (the mapper turns them into protos).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Generic, TypeVar

from buf.validate import validate_pb2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley import VideoGrants, create_join_token
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb
from parley.server import decode_page_token, encode_page_token
from parley.server import page_size as page_size_of
from parley.server.db import Sessions
from parley.sfu_registry import NoSfuNode, SfuRegistry

from . import _filters, _mapper
from ._auth import API_KEY_PREFIX, Identity, Principal, hash_secret, issue_dev_token
from ._errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from ._models import AccessLevel, ApiKeyRow, LobbyEntryRow, LobbyState, Role, RoomAccessRow, RoomRow, UserRow
from ._repos import Accesses, ApiKeys, LobbyEntries, Rooms, Users, aware
from ._settings import ControlSettings

log = logging.getLogger(__name__)

_RANK = {Role.MEMBER: 1, Role.ADMINISTRATOR: 2, Role.OWNER: 3}
_ALL_SOURCES = list(_mapper.SOURCES)
_SLUG_LETTERS = "abcdefghijklmnopqrstuvwxyz"
ALL_SCOPES: tuple[str, ...] = tuple(
    getattr(
        res.ApiKey.DESCRIPTOR.fields_by_name["scopes"]
        .GetOptions()
        .Extensions[validate_pb2.field]
        .repeated.items.string,
        "in",
    )
)  # the scopes the contract declares (ApiKey.scopes' allowed values), so the two never drift


def _now() -> datetime:
    return datetime.now(UTC)


def _new_id() -> str:
    return uuid.uuid4().hex


def _random_slug() -> str:
    """A meeting code like ``abc-defg-hij`` (26^10, about 1.4e14 codes)."""
    pick = secrets.choice
    return "-".join("".join(pick(_SLUG_LETTERS) for _ in range(n)) for n in (3, 4, 3))


T = TypeVar("T")
R = TypeVar("R", RoomRow, LobbyEntryRow, ApiKeyRow)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


class ControlPlane:
    """Use cases of the control plane, over one database."""

    def __init__(self, settings: ControlSettings, sessions: Sessions) -> None:
        self.settings = settings
        # Reads and writes open different transactions (on SQLite, only writes take the lock).
        self._reads = sessions.reads
        self._writes = sessions.writes
        self.sfu_registry = (
            SfuRegistry(settings.redis_url, prefix=settings.sfu_registry_prefix) if settings.redis_url else None
        )

    # -- callers -------------------------------------------------------------------------

    async def user_for(self, identity: Identity) -> UserRow:
        # An identity provider may send longer claims than the columns hold: cut, never fail.
        identity = Identity(
            subject=identity.subject[:255], email=identity.email[:320], display_name=identity.display_name[:100]
        )
        return await self._user_for(identity)

    async def _user_for(self, identity: Identity) -> UserRow:
        """The user behind ``identity``, created on first sight. The e-mail follows the identity
        provider; the display name is taken from it once, then belongs to the user."""
        async with self._reads() as session:  # the common case: known user, nothing to change
            known = await Users(session).by_subject(identity.subject)
        if known is not None and (not identity.email or identity.email == known.email):
            return known
        async with self._writes.begin() as session:
            users = Users(session)
            row = await users.by_subject(identity.subject)
            now = _now()
            if row is None:
                row = UserRow(
                    id=_new_id(),
                    subject=identity.subject,
                    email=identity.email,
                    display_name=identity.display_name or identity.subject,
                    locale="",
                    created_at=now,
                    updated_at=now,
                )
                users.add(row)
                try:
                    await session.flush()
                except IntegrityError:
                    # Another replica created it at the same moment: use theirs.
                    await session.rollback()
                    return await self._user_for(identity)
            elif identity.email and identity.email != row.email:
                row.email = identity.email
                row.updated_at = now
            return row

    async def authenticate_api_key(self, key_id: str, secret: str) -> Principal:
        async with self._reads() as session:
            row = await ApiKeys(session).get(key_id)
        if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(secret)):
            raise Unauthenticated("unknown or revoked API key")
        return Principal(kind="api_key", api_key_id=row.id, display_name=row.display_name, scopes=frozenset(row.scopes))

    # -- users ---------------------------------------------------------------------------

    async def dev_login(self, identity: Identity) -> tuple[str, datetime, UserRow]:
        if not self.settings.dev_login:
            raise PermissionDenied(
                "dev login is disabled; log in through the identity provider", reason="DEV_LOGIN_DISABLED"
            )
        user = await self.user_for(identity)
        token, expires = issue_dev_token(self.settings, identity, ttl=timedelta(hours=12))
        return token, expires, user

    async def _user_row(self, user_id: str) -> UserRow:
        async with self._reads() as session:
            row = await Users(session).get(user_id)
        if row is None:
            raise NotFound("user not found")
        return row

    def _own_user_id(self, caller: Principal, user: str) -> str:
        user_id = caller.require_user()
        if user not in ("me", user_id):
            raise PermissionDenied("users may read and change only themselves")
        return user_id

    async def get_user(self, caller: Principal, user: str) -> UserRow:
        return await self._user_row(self._own_user_id(caller, user))

    async def update_user(self, caller: Principal, user: str, values: res.User, paths: Sequence[str]) -> UserRow:
        user_id = self._own_user_id(caller, user)
        async with self._writes.begin() as session:
            row = await Users(session).get(user_id)
            if row is None:
                raise NotFound("user not found")
            if "display_name" in paths:
                if not values.display_name.strip():
                    raise InvalidArgument.field("user.display_name", "must not be blank")
                row.display_name = values.display_name.strip()
            if "locale" in paths:
                row.locale = values.locale
            row.updated_at = _now()
            return row

    # -- rooms ---------------------------------------------------------------------------

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
        if role is None or _RANK[role] < _RANK[at_least]:
            raise PermissionDenied(f"needs the {at_least} role on this room")
        return role

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
            now = _now()
            row = RoomRow(
                id=_new_id(),
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
                                id=_new_id(), room_id=row.id, user_id=caller.user_id, role=Role.OWNER, created_at=now
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
        return _page(rows, size, scope)

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
            row.updated_at = _now()
            return row

    async def delete_room(self, caller: Principal, id_or_slug: str, etag: str) -> None:
        async with self._writes.begin() as session:
            row = await self._room(session, id_or_slug, for_update=True)
            await self._require_role(session, row, caller, at_least=Role.OWNER, scope="rooms:delete")
            if etag and etag != _mapper.etag(row):
                raise FailedPrecondition("the room changed since it was read (etag mismatch)", reason="ETAG_MISMATCH")
            await Rooms(session).delete(row)

    # -- joining -------------------------------------------------------------------------

    def _grants(self, room: RoomRow, role: Role | None) -> room_pb.JoinGrants:
        """Grants of a participant: moderators may do everything; others what the room allows."""
        moderator = role in (Role.ADMINISTRATOR, Role.OWNER)
        sources = [] if moderator else [_mapper.SOURCES[s] for s in room.publish_sources]
        return room_pb.JoinGrants(
            can_publish=moderator or bool(sources),
            can_subscribe=True,
            can_publish_data=True,
            publish_sources=sources,
            room_admin=moderator,
            can_mute_others=moderator or room.everyone_can_mute,
        )

    async def _sfu_url(self, room_id: str) -> str:
        """Where the room meets: its node in a multi-node deployment, else the one SFU."""
        if self.sfu_registry is None:
            return self.settings.sfu_url
        try:
            return (await self.sfu_registry.assign(room_id)).url
        except NoSfuNode as error:
            raise Unavailable("no SFU node is running; try again shortly") from error

    async def _join_grant(
        self,
        room: RoomRow,
        identity: str,
        name: str,
        grants: room_pb.JoinGrants,
        *,
        metadata: str = "",
        ttl: timedelta | None = None,
    ) -> room_pb.JoinGrant:
        video = VideoGrants(
            room=room.id,
            can_publish=grants.can_publish,
            can_subscribe=grants.can_subscribe,
            can_publish_data=grants.can_publish_data,
            can_publish_sources=tuple(_mapper.SOURCE_NAMES[s] for s in grants.publish_sources),
            hidden=grants.hidden,
            recorder=grants.recorder,
            room_admin=grants.room_admin,
            can_mute_others=grants.can_mute_others,
        )
        token, expires = create_join_token(
            key_id=self.settings.token_key_id,
            secret=self.settings.token_secret,
            identity=identity,
            grants=video,
            name=name,
            metadata=metadata,
            ttl=ttl or self.settings.join_token_ttl,
        )
        return room_pb.JoinGrant(
            room=f"rooms/{room.id}",
            token=token,
            sfu_url=await self._sfu_url(room.id),
            identity=identity,
            grants=grants,
            expire_time=_mapper.timestamp(expires),
        )

    async def join_room(
        self, caller: Principal, id_or_slug: str, *, display_name: str, lobby_ticket: str
    ) -> room_pb.JoinRoomResponse:
        if caller.is_api_key:
            raise PermissionDenied("API keys join through RoomService.CreateJoinToken")
        now = _now()
        user_id = caller.user_id if caller.is_user else None
        name = display_name.strip() or caller.display_name
        async with self._reads() as session:
            # The hot path: one read query for the room and the caller's role on it.
            found = await Rooms(session).find_with_role(id_or_slug, user_id)
        if found is None:
            raise NotFound(f"room {id_or_slug!r} not found")
        room, role = found
        may_enter = (
            room.access_level == AccessLevel.PUBLIC
            or role is not None
            or (room.access_level == AccessLevel.TRUSTED and user_id is not None)
        )
        if not name and (may_enter or not lobby_ticket):
            raise InvalidArgument.field("display_name", "anonymous guests must give a display name")
        if may_enter:  # a ticket matters only to those who must wait
            identity = user_id or f"guest-{secrets.token_hex(8)}"
            return room_pb.JoinRoomResponse(
                grant=await self._join_grant(room, identity, name, self._grants(room, role))
            )
        async with self._writes.begin() as session:  # the lobby: follow a ticket, or ask anew
            room = await self._room(session, room.id)
            if lobby_ticket:
                return await self._join_with_ticket(session, room, lobby_ticket, now)
            return room_pb.JoinRoomResponse(lobby=await self._enter_lobby(session, room, user_id, name, now))

    async def _enter_lobby(
        self, session: AsyncSession, room: RoomRow, user_id: str | None, name: str, now: datetime
    ) -> room_pb.LobbyTicket:
        lobby = LobbyEntries(session)
        ticket = secrets.token_urlsafe(24)
        entry = await lobby.waiting_of_user(room.id, user_id, now=now) if user_id else None
        if entry is None:
            entry = LobbyEntryRow(
                id=_new_id(),
                room_id=room.id,
                user_id=user_id,
                identity=user_id or f"guest-{secrets.token_hex(8)}",
                display_name=name,
                ticket_hash="",
                state=LobbyState.WAITING,
                created_at=now,
                expires_at=now,
            )
            lobby.add(entry)
        entry.ticket_hash = hash_secret(ticket)
        entry.display_name = name
        entry.expires_at = now + self.settings.lobby_wait
        await session.flush()
        return room_pb.LobbyTicket(entry=_mapper.lobby_entry(entry), ticket=ticket)

    async def _join_with_ticket(
        self, session: AsyncSession, room: RoomRow, ticket: str, now: datetime
    ) -> room_pb.JoinRoomResponse:
        entry = await self._entry_by_ticket(session, room, ticket, now)
        if entry.state == LobbyState.DENIED:
            raise PermissionDenied("entry to this room was refused", reason="LOBBY_DENIED")
        if entry.state == LobbyState.WAITING:
            entry.expires_at = now + self.settings.lobby_wait
            return room_pb.JoinRoomResponse(lobby=room_pb.LobbyTicket(entry=_mapper.lobby_entry(entry), ticket=ticket))
        role = await Accesses(session).role_of(room.id, entry.user_id) if entry.user_id else None
        grant = await self._join_grant(room, entry.identity, entry.display_name, self._grants(room, role))
        return room_pb.JoinRoomResponse(grant=grant)

    async def _entry_by_ticket(self, session: AsyncSession, room: RoomRow, ticket: str, now: datetime) -> LobbyEntryRow:
        entry = await LobbyEntries(session).by_ticket_hash(room.id, hash_secret(ticket))
        if entry is None or aware(entry.expires_at) <= now:
            raise FailedPrecondition(
                "the lobby ticket is unknown or has lapsed; ask to join again", reason="LOBBY_TICKET_LAPSED"
            )
        return entry

    async def create_join_token(
        self,
        caller: Principal,
        id_or_slug: str,
        *,
        identity: str,
        display_name: str,
        metadata: str,
        grants: room_pb.JoinGrants,
        ttl: timedelta | None,
    ) -> room_pb.JoinGrant:
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="tokens:create")
        if not caller.is_api_key and (grants.hidden or grants.recorder):
            raise PermissionDenied("hidden and recorder grants need an API key with tokens:create")
        return await self._join_grant(room, identity, display_name or identity, grants, metadata=metadata, ttl=ttl)

    # -- room accesses -------------------------------------------------------------------

    async def create_access(
        self, caller: Principal, id_or_slug: str, user: str, role: res.Role.ValueType
    ) -> tuple[RoomAccessRow, UserRow]:
        role_name = _mapper.ROLE_NAMES[role]
        async with self._writes.begin() as session:
            room = await self._room(session, id_or_slug, for_update=True)
            mine = await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
            if role_name == Role.OWNER and mine not in (None, Role.OWNER):
                raise PermissionDenied("only owners grant the owner role")
            target = await Users(session).get(user.removeprefix("users/"))
            if target is None:
                raise NotFound(f"{user} not found")
            accesses = Accesses(session)
            if await accesses.of_user(room.id, target.id) is not None:
                raise AlreadyExists(f"{user} already holds a role on this room; update it instead")
            row = RoomAccessRow(id=_new_id(), room_id=room.id, user_id=target.id, role=role_name, created_at=_now())
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
        if row.role == Role.OWNER and mine not in (None, Role.OWNER):
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
            elif caller.is_user and row.user_id == caller.user_id and _RANK[role_name] > _RANK[row.role]:
                raise PermissionDenied("users cannot raise their own role")
            elif role_name == Role.OWNER and mine not in (None, Role.OWNER):
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

    # -- lobby ---------------------------------------------------------------------------

    async def _entry_for(
        self, session: AsyncSession, caller: Principal, name: tuple[str, str], ticket: str, now: datetime
    ) -> LobbyEntryRow:
        """The entry, for the person waiting (by ticket) or a moderator."""
        room = await self._room(session, name[0])
        if ticket:
            entry = await self._entry_by_ticket(session, room, ticket, now)
            if entry.id != name[1]:
                raise PermissionDenied("the ticket is for another lobby entry")
            if entry.state == LobbyState.WAITING:
                entry.expires_at = now + self.settings.lobby_wait  # still there: keep the place
            return entry
        await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
        found = await LobbyEntries(session).get(room.id, name[1], now=now)
        if found is None:
            raise NotFound("lobby entry not found or lapsed")
        return found

    async def get_lobby_entry(self, caller: Principal, name: tuple[str, str], ticket: str) -> LobbyEntryRow:
        async with self._writes.begin() as session:
            return await self._entry_for(session, caller, name, ticket, _now())

    async def watch_lobby_entry(
        self, caller: Principal, name: tuple[str, str], ticket: str
    ) -> AsyncIterator[LobbyEntryRow]:
        """The entry now and after each change, until decided or lapsed.

        Polls the database (every replica sees every decision) at ``lobby_poll_interval``.
        """
        last_state = ""
        while True:
            try:
                entry = await self.get_lobby_entry(caller, name, ticket)
            except (NotFound, FailedPrecondition):
                if last_state:
                    return  # lapsed while watched
                raise
            if entry.state != last_state:
                last_state = entry.state
                yield entry
            if entry.state != LobbyState.WAITING:
                return
            await asyncio.sleep(self.settings.lobby_poll_interval.total_seconds())

    async def list_lobby(
        self, caller: Principal, id_or_slug: str, *, page_size: int, page_token: str
    ) -> Page[LobbyEntryRow]:
        now = _now()
        async with self._writes.begin() as session:
            room = await self._room(session, id_or_slug)
            await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
            lobby = LobbyEntries(session)
            await lobby.purge_lapsed(room.id, now=now)
            scope = f"lobby|{room.id}"
            size = page_size_of(page_size)
            rows = await lobby.page_waiting(
                room.id, now=now, after=decode_page_token(page_token, scope=scope), limit=size + 1
            )
        return _page(rows, size, scope)

    async def decide_lobby_entry(self, caller: Principal, name: tuple[str, str], *, admit: bool) -> LobbyEntryRow:
        now = _now()
        async with self._writes.begin() as session:
            # The room lock makes concurrent admit / deny of one entry decide once.
            room = await self._room(session, name[0], for_update=True)
            await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:update")
            entry = await LobbyEntries(session).get(room.id, name[1], now=now)
            if entry is None:
                raise NotFound("lobby entry not found or lapsed")
            decided = LobbyState.ACCEPTED if admit else LobbyState.DENIED
            if entry.state not in (LobbyState.WAITING, decided):
                raise FailedPrecondition(f"the entry was already {entry.state}", reason="LOBBY_ALREADY_DECIDED")
            if entry.state == LobbyState.WAITING:
                entry.state = decided
                entry.expires_at = now + self.settings.lobby_admitted
            return entry

    # -- API keys ------------------------------------------------------------------------

    async def create_api_key(
        self, caller: Principal | None, display_name: str, scopes: Sequence[str]
    ) -> tuple[ApiKeyRow, str]:
        """Creates a key; ``caller`` None is the operator bootstrapping the first key."""
        if caller is not None:
            _require_key_manager(caller)
        if not scopes:
            raise InvalidArgument.field("api_key.scopes", "give the key at least one scope")
        secret = "sk_" + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id=API_KEY_PREFIX + secrets.token_hex(12),
            secret_hash=hash_secret(secret),
            display_name=display_name.strip(),
            scopes=list(scopes),
            created_at=_now(),
        )
        async with self._writes.begin() as session:
            ApiKeys(session).add(row)
        return row, secret

    async def list_api_keys(self, caller: Principal | None, *, page_size: int, page_token: str) -> Page[ApiKeyRow]:
        """Lists keys; ``caller`` None is the operator (``python -m control keys list``)."""
        if caller is not None:
            _require_key_manager(caller)
        size = page_size_of(page_size)
        async with self._reads() as session:
            rows = await ApiKeys(session).page(after=decode_page_token(page_token, scope="keys"), limit=size + 1)
        return _page(rows, size, "keys")

    async def delete_api_key(self, caller: Principal | None, key_id: str) -> None:
        """Deletes a key; ``caller`` None is the operator (``python -m control keys revoke``)."""
        if caller is not None:
            _require_key_manager(caller)
        async with self._writes.begin() as session:
            keys = ApiKeys(session)
            row = await keys.get(key_id)
            if row is None:
                raise NotFound(f"API key {key_id} not found")
            await keys.delete(row)


def _require_key_manager(caller: Principal) -> None:
    caller.require_authenticated()
    if not caller.is_api_key:
        raise PermissionDenied("API keys are managed with an API key holding keys:manage")
    caller.require_scope("keys:manage")


def _access_level_filter(value: str) -> AccessLevel:
    enum_value = res.AccessLevel.Value(value) if value in res.AccessLevel.keys() else None  # noqa: SIM118 (enum wrapper, not a dict)
    if enum_value is None or enum_value not in _mapper.ACCESS_LEVEL_NAMES:
        raise ValueError(f"unknown access level {value!r}")
    return _mapper.ACCESS_LEVEL_NAMES[enum_value]


def _page(rows: list[R], size: int, scope: str) -> Page[R]:
    if len(rows) <= size:
        return Page(rows, "")
    rows = rows[:size]
    return Page(rows, encode_page_token(rows[-1].created_at, rows[-1].id, scope=scope))
