"""Rooms over gRPC on PostgreSQL and SQLite: create, read, list, update, delete."""

from __future__ import annotations

import grpc
import pytest

from parley import ParleyError
from parley.control.v1 import resources_pb2 as res

from .conftest import Callers


async def test_create_room_defaults_and_owner(callers: Callers) -> None:
    alice, alice_name = await callers.user()
    room = await alice.rooms.create(display_name="  Weekly sync ")
    assert room.display_name == "Weekly sync"
    assert room.access_level == res.ACCESS_LEVEL_PUBLIC
    assert len(room.slug.split("-")) == 3 and room.name.startswith("rooms/")
    assert list(room.configuration.publish_sources) == [1, 2, 3, 4]
    accesses = [a async for a in alice.accesses.list(room.slug)]
    assert [(a.user, a.role) for a in accesses] == [(alice_name, res.ROLE_OWNER)]


async def test_get_by_id_and_slug(callers: Callers) -> None:
    alice, _ = await callers.user()
    room = await alice.rooms.create(slug=f"team-{callers.server.port}-x", display_name="Team")
    by_slug = await callers.anonymous.rooms.get(room.slug)
    by_id = await callers.anonymous.rooms.get(room.name)
    assert by_slug == by_id == room


async def test_duplicate_slug_is_already_exists(callers: Callers) -> None:
    alice, _ = await callers.user()
    slug = f"dup-{callers.server.port}"
    await alice.rooms.create(slug=slug)
    with pytest.raises(ParleyError) as caught:
        await alice.rooms.create(slug=slug)
    assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS


async def test_slug_that_looks_like_an_id_is_refused(callers: Callers) -> None:
    alice, _ = await callers.user()
    with pytest.raises(ParleyError) as caught:
        await alice.rooms.create(slug="0123456789abcdef0123456789abcdef")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.field_violations] == ["room.slug"]


async def test_list_pages_through_the_callers_rooms_only(callers: Callers) -> None:
    alice, _ = await callers.user()
    bob, _ = await callers.user()
    created = [await alice.rooms.create(display_name=f"room {i}") for i in range(5)]
    await bob.rooms.create(display_name="bob's")
    listed = [r async for r in alice.rooms.list(page_size=2)]
    assert [r.name for r in listed] == [r.name for r in reversed(created)]  # newest first, across 3 pages


async def test_list_filters(callers: Callers) -> None:
    alice, _ = await callers.user()
    await alice.rooms.create(display_name="open")
    closed = await alice.rooms.create(display_name="closed", access_level=res.ACCESS_LEVEL_RESTRICTED)
    found = [r async for r in alice.rooms.list(filter='access_level = "ACCESS_LEVEL_RESTRICTED"')]
    assert [r.name for r in found] == [closed.name]
    found = [r async for r in alice.rooms.list(filter=f'slug = "{closed.slug}" AND display_name = "closed"')]
    assert [r.name for r in found] == [closed.name]


@pytest.mark.parametrize(
    "bad_filter", ['color = "red"', "access_level = ACCESS_LEVEL_PUBLIC", 'access_level = "LOUD"', "slug ~ x"]
)
async def test_bad_filters_are_invalid_argument(callers: Callers, bad_filter: str) -> None:
    alice, _ = await callers.user()
    with pytest.raises(ParleyError) as caught:
        [r async for r in alice.rooms.list(filter=bad_filter)]
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.field_violations[0].field == "filter"


async def test_page_token_is_bound_to_its_query(callers: Callers) -> None:
    from parley.control.v1 import room_service_pb2 as room_pb

    alice, _ = await callers.user()
    for _ in range(3):
        await alice.rooms.create()
    first = await alice.rooms._call(alice.rooms._stub.ListRooms, room_pb.ListRoomsRequest(page_size=1))
    assert first.next_page_token
    request = room_pb.ListRoomsRequest(page_size=1, page_token=first.next_page_token, filter='slug = "x"')
    for bad in (request, room_pb.ListRoomsRequest(page_token="garbage")):
        with pytest.raises(ParleyError) as caught:
            await alice.rooms._call(alice.rooms._stub.ListRooms, bad)
        assert caught.value.field_violations[0].field == "page_token"


async def test_update_with_mask_and_etag(callers: Callers) -> None:
    alice, _ = await callers.user()
    room = await alice.rooms.create(display_name="before", access_level=res.ACCESS_LEVEL_PUBLIC)
    change = res.Room(name=room.name, display_name="after", access_level=res.ACCESS_LEVEL_RESTRICTED, etag=room.etag)
    updated = await alice.rooms.update(change, update_mask=["display_name"])
    assert updated.display_name == "after" and updated.access_level == res.ACCESS_LEVEL_PUBLIC
    assert updated.etag != room.etag
    with pytest.raises(ParleyError) as caught:  # the old etag is stale now
        await alice.rooms.update(change, update_mask=["access_level"])
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and caught.value.reason == "ETAG_MISMATCH"
    config = res.Room(name=room.name, configuration=res.RoomConfiguration(everyone_can_mute=True))
    updated = await alice.rooms.update(config, update_mask=["configuration.everyone_can_mute"])
    assert updated.configuration.everyone_can_mute and len(updated.configuration.publish_sources) == 4


async def test_delete_room_cascades(callers: Callers) -> None:
    alice, _ = await callers.user()
    room = await alice.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
    await callers.anonymous.rooms.join(room.slug, display_name="waiting")
    with pytest.raises(ParleyError) as caught:
        await alice.rooms.delete(room.slug, etag='W/"999"')
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    await alice.rooms.delete(room.slug, etag=room.etag)
    with pytest.raises(ParleyError) as caught:
        await alice.rooms.get(room.name)
    assert caught.value.code == grpc.StatusCode.NOT_FOUND
    assert [r async for r in alice.rooms.list()] == []


async def test_filter_values_may_contain_and(callers: Callers) -> None:
    alice, _ = await callers.user()
    room = await alice.rooms.create(display_name="Tom AND Jerry")
    found = [r async for r in alice.rooms.list(filter='display_name = "Tom AND Jerry"')]
    assert [r.name for r in found] == [room.name]
    with pytest.raises(ParleyError) as caught:
        [r async for r in alice.rooms.list(filter='display_name = "x" AND ')]
    assert caught.value.field_violations[0].field == "filter"


async def test_an_empty_update_mask_is_refused(callers: Callers) -> None:
    alice, _ = await callers.user()
    room = await alice.rooms.create()
    with pytest.raises(ParleyError) as caught:
        await alice.rooms.update(res.Room(name=room.name, display_name="x"), update_mask=[])
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (await alice.rooms.get(room.slug)).etag == room.etag
