"""Joining: access levels, roles, the lobby and the grants join tokens carry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from control import ControlServer, ControlSettings
from parley import Client, ParleyError, verify_join_token
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb

from .conftest import TOKEN_SECRET, Callers

LEVELS = {
    "public": res.ACCESS_LEVEL_PUBLIC,
    "trusted": res.ACCESS_LEVEL_TRUSTED,
    "restricted": res.ACCESS_LEVEL_RESTRICTED,
}

# Who enters directly ("grant") and who waits ("lobby"), as La Suite Meet does it.
RULES = {
    ("public", "anonymous"): "grant",
    ("public", "stranger"): "grant",
    ("public", "member"): "grant",
    ("trusted", "anonymous"): "lobby",
    ("trusted", "stranger"): "grant",
    ("trusted", "member"): "grant",
    ("restricted", "anonymous"): "lobby",
    ("restricted", "stranger"): "lobby",
    ("restricted", "member"): "grant",
}


@pytest.mark.parametrize(("level", "who"), sorted(RULES))
async def test_access_levels(callers: Callers, level: str, who: str) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=LEVELS[level])
    if who == "anonymous":
        client = callers.anonymous
    else:
        client, name = await callers.user()
        if who == "member":
            await owner.accesses.create(room.name, user=name, role=res.ROLE_MEMBER)
    response = await client.rooms.join(room.slug, display_name="Someone")
    assert response.WhichOneof("result") == RULES[level, who]


async def test_anonymous_guests_must_give_a_name(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create()
    with pytest.raises(ParleyError) as caught:
        await callers.anonymous.rooms.join(room.slug)
    assert caught.value.field_violations[0].field == "display_name"


async def test_grants_follow_role_and_room_configuration(callers: Callers) -> None:
    owner, _ = await callers.user()
    config = res.RoomConfiguration(publish_sources=[res.TRACK_SOURCE_MICROPHONE], everyone_can_mute=False)
    room = await owner.rooms.create(configuration=config)
    guest = (await callers.anonymous.rooms.join(room.slug, display_name="Guest")).grant
    moderator = (await owner.rooms.join(room.slug)).grant
    secrets = {"parley": TOKEN_SECRET}
    guest_claims = verify_join_token(guest.token, secrets=secrets)
    assert guest_claims.grants.room == room.name.removeprefix("rooms/")
    assert guest_claims.grants.can_publish_sources == ("microphone",) and not guest_claims.grants.room_admin
    assert guest_claims.identity.startswith("guest-") and guest_claims.name == "Guest"
    assert guest.sfu_url == "ws://sfu.test:7880"
    owner_claims = verify_join_token(moderator.token, secrets=secrets)
    assert owner_claims.grants.room_admin and owner_claims.grants.can_publish_sources == ()
    assert owner_claims.grants.may_publish("screen_share")
    watch_only = await owner.rooms.create(configuration=res.RoomConfiguration())
    grant = (await callers.anonymous.rooms.join(watch_only.slug, display_name="Viewer")).grant
    assert not verify_join_token(grant.token, secrets=secrets).grants.can_publish


async def test_lobby_admit_then_join_with_ticket(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
    ticket = (await callers.anonymous.rooms.join(room.slug, display_name="Visitor")).lobby
    assert ticket.entry.state == res.LOBBY_ENTRY_STATE_WAITING
    waiting = [e async for e in owner.lobby.list(room.slug)]
    assert [e.display_name for e in waiting] == ["Visitor"]
    again = await callers.anonymous.rooms.join(room.slug, lobby_ticket=ticket.ticket)
    assert again.WhichOneof("result") == "lobby"
    await owner.lobby.admit(ticket.entry.name)
    assert [e async for e in owner.lobby.list(room.slug)] == []
    grant = (await callers.anonymous.rooms.join(room.slug, lobby_ticket=ticket.ticket)).grant
    claims = verify_join_token(grant.token, secrets={"parley": TOKEN_SECRET})
    assert claims.name == "Visitor" and not claims.grants.room_admin
    entry = await callers.anonymous.lobby.get(ticket.entry.name, ticket=ticket.ticket)
    assert entry.state == res.LOBBY_ENTRY_STATE_ACCEPTED
    with pytest.raises(ParleyError) as caught:
        await owner.lobby.deny(ticket.entry.name)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_lobby_deny(callers: Callers) -> None:
    owner, _ = await callers.user()
    stranger, _ = await callers.user()
    room = await owner.rooms.create(access_level=LEVELS["restricted"])
    first = (await stranger.rooms.join(room.slug)).lobby
    ticket = (await stranger.rooms.join(room.slug)).lobby  # asking again reuses the entry, with a new ticket
    assert ticket.entry.name == first.entry.name and ticket.ticket != first.ticket
    await owner.lobby.deny(ticket.entry.name)
    with pytest.raises(ParleyError) as caught:
        await stranger.rooms.join(room.slug, lobby_ticket=ticket.ticket)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED and caught.value.reason == "LOBBY_DENIED"


async def test_wrong_ticket_is_refused(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=LEVELS["restricted"])
    ticket = (await callers.anonymous.rooms.join(room.slug, display_name="A")).lobby
    other = (await callers.anonymous.rooms.join(room.slug, display_name="B")).lobby
    with pytest.raises(ParleyError) as caught:
        await callers.anonymous.lobby.get(ticket.entry.name, ticket=other.ticket)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ParleyError) as caught:
        await callers.anonymous.rooms.join(room.slug, lobby_ticket="not-a-ticket")
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


async def test_watch_streams_the_decision(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=LEVELS["trusted"])
    ticket = (await callers.anonymous.rooms.join(room.slug, display_name="Watcher")).lobby
    seen: list[int] = []

    async def watch() -> None:
        async for entry in callers.anonymous.lobby.watch(ticket.entry.name, ticket=ticket.ticket):
            seen.append(entry.state)

    watcher = asyncio.create_task(watch())
    while not seen:
        await asyncio.sleep(0.05)
    await owner.lobby.admit(ticket.entry.name)
    await asyncio.wait_for(watcher, timeout=10)
    assert seen == [res.LOBBY_ENTRY_STATE_WAITING, res.LOBBY_ENTRY_STATE_ACCEPTED]


async def test_lobby_entries_lapse(tmp_path: Path) -> None:
    settings = ControlSettings(
        database_url=f"sqlite:///{tmp_path / 'c.db'}",
        token_secret=TOKEN_SECRET,
        dev_login=True,
        lobby_wait=timedelta(milliseconds=300),
    )
    async with ControlServer(settings) as server, Client(server.target) as anonymous:
        login = await anonymous.users.dev_login("owner")
        owner = anonymous.with_bearer(login.access_token)
        room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
        ticket = (await anonymous.rooms.join(room.slug, display_name="Late")).lobby
        await asyncio.sleep(0.5)
        assert [e async for e in owner.lobby.list(room.slug)] == []
        with pytest.raises(ParleyError) as caught:
            await anonymous.rooms.join(room.slug, lobby_ticket=ticket.ticket)
        assert caught.value.reason == "LOBBY_TICKET_LAPSED"


async def test_create_join_token_for_bots(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create()
    bot_key = await callers.key("tokens:create")
    grants = room_pb.JoinGrants(can_subscribe=True, hidden=True, recorder=True)
    grant = await bot_key.rooms.create_join_token(
        room.slug, identity="recorder-1", grants=grants, ttl=timedelta(minutes=10)
    )
    claims = verify_join_token(grant.token, secrets={"parley": TOKEN_SECRET})
    assert claims.identity == "recorder-1" and claims.grants.hidden and claims.grants.recorder
    assert not claims.grants.can_publish
    with pytest.raises(ParleyError) as caught:  # users may mint tokens, but not hidden ones
        await owner.rooms.create_join_token(room.slug, identity="spy", grants=grants)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_roles_keep_an_owner(callers: Callers) -> None:
    owner, _ = await callers.user()
    admin, admin_name = await callers.user()
    room = await owner.rooms.create()
    owner_access = [a async for a in owner.accesses.list(room.slug)][0]
    with pytest.raises(ParleyError) as caught:
        await owner.accesses.update(owner_access.name, role=res.ROLE_MEMBER)
    assert caught.value.reason == "LAST_OWNER"
    with pytest.raises(ParleyError) as caught:
        await owner.accesses.delete(owner_access.name)
    assert caught.value.reason == "LAST_OWNER"
    admin_access = await owner.accesses.create(room.slug, user=admin_name, role=res.ROLE_ADMINISTRATOR)
    with pytest.raises(ParleyError) as caught:  # administrators cannot touch owners
        await admin.accesses.delete(owner_access.name)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ParleyError) as caught:
        await admin.accesses.update(admin_access.name, role=res.ROLE_OWNER)
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ParleyError) as caught:
        await owner.accesses.create(room.slug, user=admin_name, role=res.ROLE_MEMBER)
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
    await owner.accesses.update(admin_access.name, role=res.ROLE_OWNER)
    await owner.accesses.delete(owner_access.name)  # another owner remains now
    assert [a.user for a in [a async for a in admin.accesses.list(room.slug)]] == [admin_name]


async def test_renamed_users_join_under_their_new_name(callers: Callers) -> None:
    subject = "renaming-user"
    user, _ = await callers.user(subject, display_name="Old Name")
    await user.users.update(res.User(name="users/me", display_name="New Name"), update_mask=["display_name"])
    again, _ = await callers.user(subject, display_name="Old Name")  # logging in again keeps the rename
    room = await again.rooms.create()
    claims = verify_join_token((await again.rooms.join(room.slug)).grant.token, secrets={"parley": TOKEN_SECRET})
    assert claims.name == "New Name"
    assert claims.identity == (await again.users.get()).name.removeprefix("users/")


async def test_concurrent_demotions_keep_an_owner(callers: Callers) -> None:
    """Two owners stepping down at once: one must be refused (row lock on PostgreSQL,
    BEGIN IMMEDIATE on SQLite)."""
    alice, _ = await callers.user()
    bob, bob_name = await callers.user()
    room = await alice.rooms.create()
    await alice.accesses.create(room.slug, user=bob_name, role=res.ROLE_OWNER)
    accesses = {a.user: a.name async for a in alice.accesses.list(room.slug)}
    alice_access = next(name for user, name in accesses.items() if user != bob_name)
    results = await asyncio.gather(
        alice.accesses.update(alice_access, role=res.ROLE_MEMBER),
        bob.accesses.update(accesses[bob_name], role=res.ROLE_MEMBER),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ParleyError)]
    assert len(refused) == 1
    assert refused[0].reason == "LAST_OWNER"
    roles = [a.role async for a in alice.accesses.list(room.slug)]
    assert roles.count(res.ROLE_OWNER) == 1


async def test_concurrent_admit_and_deny_decide_once(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
    entry = (await callers.anonymous.rooms.join(room.slug, display_name="Contested")).lobby.entry
    results = await asyncio.gather(owner.lobby.admit(entry.name), owner.lobby.deny(entry.name), return_exceptions=True)
    decided = [r for r in results if not isinstance(r, BaseException)]
    assert len(decided) == 1
    assert isinstance(results[0], ParleyError) or isinstance(results[1], ParleyError)
    assert (await owner.lobby.get(entry.name)).state == decided[0].state


async def test_a_ticket_does_not_keep_out_someone_who_may_now_enter(callers: Callers) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
    ticket = (await callers.anonymous.rooms.join(room.slug, display_name="Early")).lobby
    opened = res.Room(name=room.name, access_level=res.ACCESS_LEVEL_PUBLIC)
    await owner.rooms.update(opened, update_mask=["access_level"])
    again = await callers.anonymous.rooms.join(room.slug, display_name="Early", lobby_ticket=ticket.ticket)
    assert again.WhichOneof("result") == "grant"


async def test_long_identity_claims_are_cut_to_fit(callers: Callers) -> None:
    from control._auth import Identity

    user = await callers.server.control.user_for(
        Identity(subject="long-claims", email="e" * 400 + "@example.test", display_name="N" * 300)
    )
    assert len(user.display_name) == 100
    assert len(user.email) == 320
