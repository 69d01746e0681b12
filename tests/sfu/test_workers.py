"""Every core: SFU worker processes on one Redis (the real one, a fresh key prefix per test).
Rooms spread over the workers; a worker killed mid-meeting is restarted on its port and its
meeting goes on there, its participants joining anew with their media; ``/metrics`` answers
for each worker; and the settings that cannot work are refused before anything starts."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid
from collections import Counter

import httpx
import pytest
from av import VideoFrame
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from parley.room import Room
from parley.server import ConfigurationError
from parley.sfu_registry import SfuRegistry
from sfu import SfuSettings, SfuWorkers, worker_count

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, REDIS_URL, ColourTrack, Mint


def _settings(prefix: str, **overrides: object) -> SfuSettings:
    values: dict[str, object] = {
        "token_secrets": {KEY_ID: TOKEN_SECRET},
        "grpc_address": "127.0.0.1:0",
        "redis_url": REDIS_URL,
        "registry_prefix": prefix,
        "heartbeat_interval": 0.5,
        "workers": 2,
    }
    return SfuSettings(**{**values, **overrides})  # type: ignore[arg-type]


async def test_rooms_spread_over_workers_and_a_killed_workers_meeting_goes_on(prefix: str, token: Mint) -> None:
    registry = SfuRegistry(REDIS_URL, prefix=prefix)
    async with SfuWorkers(_settings(prefix)) as workers:
        assert len(set(workers.targets)) == 2 and len(set(workers.pids)) == 2
        rooms = [f"spread-{i}-{uuid.uuid4().hex[:6]}" for i in range(4)]
        placed = {room: await registry.assign(room) for room in rooms}
        assert Counter(node.id for node in placed.values()) == Counter({n: 2 for n in workers.node_ids})
        assert {node.url for node in placed.values()} == {f"grpc://{t}" for t in workers.targets}

        room_id, home = next(iter(placed.items()))
        index = workers.node_ids.index(home.id)
        watcher = await Room.connect(home.url, token("watcher", room_id), reconnect_within=60)
        bot = await Room.connect(home.url, token("bot", room_id), reconnect_within=60)
        try:
            published = await bot.publish(ColourTrack(), source="camera")
            await watcher.wait_for("track_subscribed", lambda e: e.track is not None, within=30)

            restarts = REGISTRY.get_sample_value("parley_sfu_worker_restarts_total", {"worker": str(index)}) or 0
            os.kill(workers.pids[index], signal.SIGKILL)
            # Both come back to the restarted worker (a new node) and join anew; the meeting
            # lives there now, and the bot's camera reaches the watcher again.
            for room in (watcher, bot):
                reconnected = await room.wait_for("reconnected", within=60)
                assert not reconnected.resumed
            assert workers.node_ids[index] not in ("", home.id)
            assert await registry.owner(room_id) == workers.node_ids[index]
            assert REGISTRY.get_sample_value("parley_sfu_worker_restarts_total", {"worker": str(index)}) == restarts + 1
            again = await watcher.wait_for(
                "track_subscribed", lambda e: e.track is not None and e.track.sid != published.sid, within=60
            )
            assert again.track is not None and again.track.track is not None
            assert isinstance(await asyncio.wait_for(again.track.track.recv(), 20), VideoFrame)
            assert set(watcher.participants) == {"bot"}
            # The other worker's rooms never noticed.
            others = [node.id for node in placed.values() if node.id != home.id]
            assert all(node_id in workers.node_ids for node_id in others)
        finally:
            await bot.close()
            await watcher.close()
    await registry.aclose()


async def test_participants_of_a_killed_worker_follow_their_room_to_another(prefix: str, token: Mint) -> None:
    """While the worker restarts, the room is taken by the other (as a browser's rejoin through
    the gateway would): the bots, back at the restarted worker, are sent on to it."""
    registry = SfuRegistry(REDIS_URL, prefix=prefix)
    async with SfuWorkers(_settings(prefix)) as workers:
        room_id = f"follow-{uuid.uuid4().hex[:8]}"
        home = await registry.assign(room_id)
        index = workers.node_ids.index(home.id)
        other = workers.node_ids[1 - index]
        watcher = await Room.connect(home.url, token("watcher", room_id), reconnect_within=60)
        bot = await Room.connect(home.url, token("bot", room_id), reconnect_within=60)
        try:
            await bot.publish(ColourTrack(), source="camera")
            await watcher.wait_for("track_subscribed", lambda e: e.track is not None, within=30)
            os.kill(workers.pids[index], signal.SIGKILL)
            for _ in range(100):  # once the supervisor has taken the dead node out
                if await registry.claim(room_id, other) == other:
                    break
                await asyncio.sleep(0.05)
            assert await registry.owner(room_id) == other
            for room in (watcher, bot):
                await room.wait_for("reconnected", within=60)
            assert workers.node_ids[index] != home.id
            assert await registry.owner(room_id) == other  # they followed the room; it did not move back
            again = await watcher.wait_for("track_subscribed", lambda e: e.track is not None, within=60)
            assert again.track is not None and again.track.track is not None
            assert isinstance(await asyncio.wait_for(again.track.track.recv(), 20), VideoFrame)
        finally:
            await bot.close()
            await watcher.close()
    await registry.aclose()


async def test_metrics_answer_for_every_worker(prefix: str, token: Mint) -> None:
    async with SfuWorkers(_settings(prefix), metrics_address="127.0.0.1:0") as workers:
        assert workers.metrics is not None
        room_id = f"metrics-{uuid.uuid4().hex[:8]}"
        registry = SfuRegistry(REDIS_URL, prefix=prefix)
        home = (await registry.assign(room_id)).url
        await registry.aclose()
        bot = await Room.connect(home, token("bot", room_id))
        try:
            async with httpx.AsyncClient() as http:
                text = (await http.get(workers.metrics.url)).text
        finally:
            await bot.close()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    cpu = families["process_cpu_seconds"].samples
    assert {s.labels.get("worker") for s in cpu} >= {"0", "1"}
    # (Nodes of this process, other tests', answer without a worker label.)
    rooms = {s.labels["worker"]: s.value for s in families["parley_sfu_rooms"].samples if "worker" in s.labels}
    assert sorted(rooms.values()) == [0.0, 1.0]
    participants = [s for s in families["parley_sfu_participants"].samples if s.value and "worker" in s.labels]
    assert [s.labels["node"] for s in participants] == [workers.node_ids[int(participants[0].labels["worker"])]]


def test_settings_that_cannot_work_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="need Redis"):
        SfuWorkers(_settings(prefix, redis_url=""))
    with pytest.raises(ConfigurationError, match=r"\{port\}"):
        SfuWorkers(_settings(prefix, public_url="grpc://sfu.example.com:7880"))
    with pytest.raises(ConfigurationError, match="workers"):
        _settings(prefix, workers=-1)
    assert worker_count(0) == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3
    # One worker per core on a one-core machine, or one asked for: a single node, no Redis needed.
    assert SfuWorkers(_settings(prefix, redis_url="", workers=1)).count == 1


async def test_a_worker_that_cannot_start_says_why(prefix: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match="sfu worker 0 did not start"):
            async with SfuWorkers(_settings(prefix, grpc_address=f"127.0.0.1:{port}")):
                pass
