"""Joining a room: a join grant (token and SFU address) for those who may enter, the lobby for
those who must wait, and join tokens that API keys and moderators mint for others."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from parley import create_join_token
from parley.control.v1 import room_service_pb2 as room_pb
from parley.server.db import Sessions
from parley.sfu_registry import NoSfuNode, SfuRegistry

from . import _mapper, _policy
from ._auth import Principal, hash_secret
from ._domain import UseCases, new_id, utcnow
from ._errors import InvalidArgument, NotFound, PermissionDenied, Unavailable
from ._lobby import entry_by_ticket
from ._models import LobbyEntryRow, LobbyState, Role, RoomRow
from ._repos import Accesses, LobbyEntries, Rooms
from ._settings import ControlSettings


class JoinUseCases(UseCases):
    def __init__(self, settings: ControlSettings, sessions: Sessions, sfu_registry: SfuRegistry | None) -> None:
        super().__init__(settings, sessions)
        self.sfu_registry = sfu_registry

    def _grants(self, room: RoomRow, role: Role | None) -> room_pb.JoinGrants:
        return _mapper.join_grants(room, moderator=_policy.is_moderator(role))

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
        token, expires = create_join_token(
            key_id=self.settings.token_key_id,
            secret=self.settings.token_secret,
            identity=identity,
            grants=_mapper.video_grants(room, grants),
            name=name,
            metadata=metadata,
            ttl=ttl or self.settings.join_token_ttl,
        )
        return _mapper.join_grant(
            room, token=token, sfu_url=await self._sfu_url(room.id), identity=identity, grants=grants, expires=expires
        )

    async def service_grant(
        self, room: RoomRow, identity: str, name: str, grants: room_pb.JoinGrants
    ) -> room_pb.JoinGrant:
        """A join grant for a participant that control itself sends (a metadata agent); no
        caller's rights are checked: the use case that sends it has checked its own."""
        return await self._join_grant(room, identity, name, grants)

    async def join_room(
        self, caller: Principal, id_or_slug: str, *, display_name: str, lobby_ticket: str
    ) -> room_pb.JoinRoomResponse:
        if caller.is_api_key:
            raise PermissionDenied("API keys join through RoomService.CreateJoinToken")
        now = utcnow()
        user_id = caller.user_id if caller.is_user else None
        name = display_name.strip() or caller.display_name
        async with self._reads() as session:
            # The hot path: one read query for the room and the caller's role on it.
            found = await Rooms(session).find_with_role(id_or_slug, user_id)
        if found is None:
            raise NotFound(f"room {id_or_slug!r} not found")
        room, role = found
        may_enter = _policy.may_enter(room.access_level, role, user_id)
        if not name and (may_enter or not lobby_ticket):
            raise InvalidArgument.field("display_name", "anonymous guests must give a display name")
        if may_enter:  # a ticket matters only to those who must wait
            identity = user_id or f"guest-{secrets.token_hex(8)}"
            return _mapper.join_response(await self._join_grant(room, identity, name, self._grants(room, role)))
        async with self._writes.begin() as session:  # the lobby: follow a ticket, or ask anew
            room = await self._room(session, room.id)
            if lobby_ticket:
                return await self._join_with_ticket(session, room, lobby_ticket, now)
            return _mapper.join_response(await self._enter_lobby(session, room, user_id, name, now))

    async def _enter_lobby(
        self, session: AsyncSession, room: RoomRow, user_id: str | None, name: str, now: datetime
    ) -> room_pb.LobbyTicket:
        lobby = LobbyEntries(session)
        ticket = secrets.token_urlsafe(24)
        entry = await lobby.waiting_of_user(room.id, user_id, now=now) if user_id else None
        if entry is None:
            entry = LobbyEntryRow(
                id=new_id(),
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
        return _mapper.lobby_ticket(entry, ticket)

    async def _join_with_ticket(
        self, session: AsyncSession, room: RoomRow, ticket: str, now: datetime
    ) -> room_pb.JoinRoomResponse:
        entry = await entry_by_ticket(session, room, ticket, now)
        if entry.state == LobbyState.DENIED:
            raise PermissionDenied("entry to this room was refused", reason="LOBBY_DENIED")
        if entry.state == LobbyState.WAITING:
            entry.expires_at = now + self.settings.lobby_wait
            return _mapper.join_response(_mapper.lobby_ticket(entry, ticket))
        role = await Accesses(session).role_of(room.id, entry.user_id) if entry.user_id else None
        grant = await self._join_grant(room, entry.identity, entry.display_name, self._grants(room, role))
        return _mapper.join_response(grant)

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
