"""The SFU's ``/metrics``: rooms, participants and tracks of the node, and forwarded packets,
moving as a meeting goes on."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from parley.room import Room
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from ..test_observability import scrape, value
from .conftest import KEY_ID, Mint, ToneTrack


async def test_metrics_follow_a_meeting(token: Mint) -> None:
    settings = SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0")
    room_id = f"metrics-{uuid.uuid4().hex[:8]}"
    async with SfuServer(settings, metrics_address="127.0.0.1:0") as sfu, httpx.AsyncClient() as http:
        assert sfu.metrics is not None
        node = sfu.cluster.node_id
        before = scrape((await http.get(sfu.metrics.url)).text)
        alice = await Room.connect(sfu.target, token("alice", room_id))
        bob = await Room.connect(sfu.target, token("bob", room_id))
        try:
            await alice.publish(ToneTrack(), source="microphone")
            event = await bob.wait_for("track_subscribed", within=30)
            assert event.track is not None and event.track.track is not None
            for _ in range(50):  # a second of audio through the SFU
                await asyncio.wait_for(event.track.track.recv(), 10)
            during = scrape((await http.get(sfu.metrics.url)).text)
        finally:
            await alice.close()
            await bob.close()
    assert value(during, "parley_sfu_rooms", node=node) == 1
    assert value(during, "parley_sfu_participants", node=node) == 2
    assert value(during, "parley_sfu_published_tracks", node=node) == 1
    assert value(during, "parley_sfu_subscribed_tracks", node=node) == 1
    forwarded = value(during, "parley_sfu_forwarded_packets_total") - value(
        before, "parley_sfu_forwarded_packets_total"
    )
    assert forwarded >= 50
    assert value(during, "parley_sfu_forwarded_bytes_total") > value(before, "parley_sfu_forwarded_bytes_total")
