"""Several SFU nodes on one Redis (the real one on 127.0.0.1:6379, a fresh key prefix per
test): rooms spread over the nodes, a node refuses rooms that meet elsewhere, a dead node's
rooms move on their next join, and control's join tokens point at the room's node."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path

import grpc
import pytest
import websockets

from control import ALL_SCOPES, ControlServer, ControlSettings
from gateway import GatewayServer, GatewaySettings
from parley import Client, FailedPrecondition, ParleyError
from parley.room import Room
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from parley.sfu_registry import SfuRegistry
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, REDIS_URL, Mint


def _node(prefix: str) -> SfuServer:
    settings = SfuSettings(
        token_secrets={KEY_ID: TOKEN_SECRET},
        grpc_address="127.0.0.1:0",
        redis_url=REDIS_URL,
        registry_prefix=prefix,
        heartbeat_interval=0.2,
    )
    return SfuServer(settings)


async def test_rooms_spread_and_move_when_a_node_dies(prefix: str, token: Mint) -> None:
    registry = SfuRegistry(REDIS_URL, prefix=prefix, ttl=0.6)
    async with _node(prefix) as first, _node(prefix) as second:
        nodes = {first.cluster.node_id: first, second.cluster.node_id: second}
        rooms = [f"spread-{i}" for i in range(6)]
        placed = {room: (await registry.assign(room)).id for room in rooms}
        assert Counter(placed.values()) == Counter({first.cluster.node_id: 3, second.cluster.node_id: 3})
        assert (await registry.assign(rooms[0])).id == placed[rooms[0]]  # a room stays put

        room_id = rooms[0]
        home, away = nodes[placed[room_id]], next(n for i, n in nodes.items() if i != placed[room_id])
        refused = await _join_refusal(away.target, token("alice", room_id))
        assert refused.reason == "ROOM_ON_ANOTHER_NODE" and refused.metadata == {"node_url": f"grpc://{home.target}"}
        alice = await Room.connect(away.target, token("alice", room_id))  # sent on to the room's node
        assert "alice" in home.rooms.rooms[room_id].sessions and room_id not in away.rooms.rooms

        # The home node stops sending heartbeats (dead, or stalled): the room moves on its next join.
        assert home.cluster._task is not None
        home.cluster._task.cancel()
        await asyncio.sleep(1.0)
        moved = await registry.assign(room_id)
        assert moved.id == away.cluster.node_id
        bob = await Room.connect(away.target, token("bob", room_id))
        assert bob.info.room == room_id
        assert isinstance(await _join_refusal(home.target, token("carol", room_id)), FailedPrecondition)
        # A stalled home node comes back: its participants of the moved room are sent on.
        home.cluster._task = asyncio.create_task(home.cluster._heartbeats())
        left = await alice.wait_for("left", within=5)
        assert left.reason == res.LEAVE_REASON_MOVED
        await alice.close()
        await bob.close()
    await registry.aclose()


async def test_control_sends_participants_to_the_rooms_node(prefix: str, tmp_path: Path) -> None:
    settings = ControlSettings(
        database_url=f"sqlite:///{tmp_path / 'control.db'}",
        token_secret=TOKEN_SECRET,
        dev_login=True,
        redis_url=REDIS_URL,
        sfu_registry_prefix=prefix,
    )
    async with ControlServer(settings) as control:
        key, secret = await control.control.create_api_key(None, "cluster test", ALL_SCOPES)
        client = Client(control.target).with_bearer(f"{key.id}.{secret}")
        try:
            room = await client.rooms.create(display_name="Cluster")
            with pytest.raises(Exception, match="UNAVAILABLE"):
                await client.rooms.create_join_token(room.slug, identity="early")  # no node yet
            async with _node(prefix) as node:
                grant = await client.rooms.create_join_token(room.slug, identity="bot")
                assert grant.sfu_url == f"grpc://{node.target}"
                bot = await Room.connect(grant.sfu_url, grant.token)
                assert grant.room == f"rooms/{bot.info.room}"
                await bot.close()
        finally:
            await client.aclose()


async def test_the_browser_bridge_follows_the_rooms_node(prefix: str, token: Mint) -> None:
    registry = SfuRegistry(REDIS_URL, prefix=prefix)
    settings = GatewaySettings(
        control_target="127.0.0.1:9",
        session_secret="cluster-test-session-secret-" + "q" * 32,
        redis_url=REDIS_URL,
        sfu_registry_prefix=prefix,
        secure_cookies=False,
    )
    async with _node(prefix) as first, _node(prefix) as second, GatewayServer(settings, extra_routes=[]) as gateway:
        placed = {(await registry.assign(f"bridge-{i}")).id: f"bridge-{i}" for i in range(2)}
        url = gateway.url.replace("http://", "ws://") + "/v1/signal"
        for node in (first, second):
            room_id = placed[node.cluster.node_id]
            async with websockets.connect(url) as ws:
                await ws.send(json.dumps({"join": {"token": token("browser", room_id)}}))
                joined = json.loads(await ws.recv())
                assert joined["joined"]["room"]["room"] == room_id
                assert "browser" in node.rooms.rooms[room_id].sessions
    await registry.aclose()


async def _join_refusal(target: str, join_token: str) -> ParleyError:
    """What a node answers a join it refuses (a plain signal stream: the SDK's Room would follow)."""
    async with grpc.aio.insecure_channel(target) as channel:
        call = sig_grpc.SignalServiceStub(channel).Connect()
        await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=join_token)))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), 20)
        return ParleyError.from_rpc_error(refused.value)
