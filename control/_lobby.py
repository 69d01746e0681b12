"""The lobby: those waiting to enter follow their entry by ticket; moderators list, admit and
deny. Entering the lobby is part of joining (``_joining.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from parley.server import decode_page_token
from parley.server import page_size as page_size_of

from ._auth import Principal, hash_secret
from ._domain import Page, UseCases, page_of, utcnow
from ._errors import FailedPrecondition, NotFound, PermissionDenied
from ._models import LobbyEntryRow, LobbyState, Role, RoomRow
from ._repos import LobbyEntries, aware


async def entry_by_ticket(session: AsyncSession, room: RoomRow, ticket: str, now: datetime) -> LobbyEntryRow:
    entry = await LobbyEntries(session).by_ticket_hash(room.id, hash_secret(ticket))
    if entry is None or aware(entry.expires_at) <= now:
        raise FailedPrecondition(
            "the lobby ticket is unknown or has lapsed; ask to join again", reason="LOBBY_TICKET_LAPSED"
        )
    return entry


class LobbyUseCases(UseCases):
    async def _entry_for(
        self, session: AsyncSession, caller: Principal, name: tuple[str, str], ticket: str, now: datetime
    ) -> LobbyEntryRow:
        """The entry, for the person waiting (by ticket) or a moderator."""
        room = await self._room(session, name[0])
        if ticket:
            entry = await entry_by_ticket(session, room, ticket, now)
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
            return await self._entry_for(session, caller, name, ticket, utcnow())

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
        now = utcnow()
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
        return page_of(rows, size, scope)

    async def decide_lobby_entry(self, caller: Principal, name: tuple[str, str], *, admit: bool) -> LobbyEntryRow:
        now = utcnow()
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
