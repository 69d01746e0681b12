"""A subscriber on a slow downlink: chromium publishes simulcast, one bot receives over a link
the test rate-limits (a ``tc tbf`` on a veth pair into a private network namespace), another
over loopback. Congestion control moves the throttled bot to a layer that fits, without
lasting loss, leaves the other on the top layer, and climbs back once the limit is lifted.
Skipped where network namespaces cannot be made (not root, no iproute2)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import REGISTRY, generate_latest

from gateway import GatewayServer
from parley.room import Room
from sfu import SfuServer, SfuSettings
from sfu._media import DownTrack

from ..conftest import TOKEN_SECRET
from ..test_observability import scrape, value
from .browser import build_sdk_bundle, close_page, gateway_for, open_page, read_event
from .conftest import KEY_ID, Mint
from .netns import HOST_ADDRESS, CannotMakeNamespace, Link, bot_in, namespace
from .test_simulcast import Watcher, _describe, _top_layer, _up


@pytest.fixture(scope="module")
def netns() -> Iterator[tuple[str, str]]:
    if shutil.which("chromium") is None:
        pytest.skip("chromium missing: ./scripts/setup --test")
    try:
        with namespace() as made:
            yield made
    except CannotMakeNamespace as error:
        pytest.skip(str(error))


@pytest.fixture(scope="module")
async def sfu_on_veth(netns: tuple[str, str]) -> AsyncIterator[SfuServer]:
    """An SFU the namespace reaches (signaling on this side's veth address)."""
    settings = SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address=f"{HOST_ADDRESS}:0", empty_timeout=2.0)
    async with SfuServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
async def gateway(sfu_on_veth: SfuServer) -> AsyncIterator[GatewayServer]:
    await build_sdk_bundle()
    async with gateway_for(sfu_on_veth.target) as server:
        yield server


def _down(sfu: SfuServer, room_id: str, identity: str, sid: str) -> DownTrack:
    down = sfu.rooms.rooms[room_id].sessions[identity].subscriber.subscriptions[sid].down
    assert down is not None
    return down


def _height(down: DownTrack) -> int:
    return down.layer.height if down.layer is not None else 0


async def _until(condition: object, within: float, describe: object) -> float:
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < started + within, describe()  # type: ignore[operator]
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_a_throttled_subscriber_drops_a_layer_and_climbs_back(
    netns: tuple[str, str], sfu_on_veth: SfuServer, gateway: GatewayServer, token: Mint
) -> None:
    sfu, (namespace, device) = sfu_on_veth, netns
    link = Link(device)
    room_id = f"throttled-{uuid.uuid4().hex[:8]}"
    free = Watcher(await Room.connect(sfu.target, token("free", room_id)))
    browser = await open_page(f"{gateway.url}/meet.html#token={token('browser', room_id)}&simulcast=1")
    try:
        assert (await read_event(browser))["event"] == "ready"
        sid = await free.start()
        await free.room.set_track_settings([sid], width=1280, height=720)
        async with bot_in(namespace, sfu.target, token("throttled", room_id)) as bot:
            assert bot.stdout is not None
            line = (await asyncio.wait_for(bot.stdout.readline(), 90)).decode()
            assert line.startswith("subscribed"), line
            top = await _top_layer(sfu, room_id, sid)
            up = _up(sfu, room_id, sid)
            throttled, unthrottled = _down(sfu, room_id, "throttled", sid), _down(sfu, room_id, "free", sid)
            await _until(
                lambda: _height(throttled) == _height(unthrottled) == top[1], 30, lambda: _describe(sfu, room_id, sid)
            )
            # The browser's uplink estimate grows for a while yet: wait until the top layer
            # costs well over the bottom one (the middle one is off: dynacast), and limit the
            # link between them.
            bottom, top_layer = (
                min(up.layers.values(), key=lambda x: x.height),
                max(up.layers.values(), key=lambda x: x.height),
            )
            await _until(lambda: top_layer.bitrate > 3 * bottom.bitrate, 60, lambda: _describe(sfu, room_id, sid))
            rates = {layer.rid: round(layer.bitrate / 1000) for layer in up.layers.values()}
            limit = int((bottom.bitrate * top_layer.bitrate) ** 0.5)
            print(f"\nlayers (kb/s): {rates}; limit {limit // 1000} kb/s")

            link.limit(limit)
            dropped_in = await _until(
                lambda: _height(throttled) < top[1], 20, lambda: f"{_describe(sfu, room_id, sid)} {link.counters()}"
            )
            # Settled (probes upward come every PROBE_BACKOFF_MAX seconds by now): most seconds
            # pass without loss, and what is lost is lost while probing.
            await asyncio.sleep(20)
            seconds = []
            for _ in range(15):
                before = link.counters()
                await asyncio.sleep(1)
                after = link.counters()
                seconds.append((after[0] - before[0], after[1] - before[1], after[2] - before[2]))
                print(
                    "DEBUG",
                    seconds[-1],
                    _height(throttled),
                    throttled.bandwidth,
                    throttled.bandwidth.padding if throttled.bandwidth else None,
                )
                assert _height(unthrottled) == top[1], _describe(sfu, room_id, sid)  # the others keep theirs
            received = sum(s[0] for s in seconds) * 8 / len(seconds)
            dropped = sum(s[2] for s in seconds)
            loss = dropped / max(1, dropped + sum(s[1] for s in seconds))
            lossless = sum(1 for s in seconds if s[2] == 0)
            print(
                f"throttled: dropped a layer in {dropped_in:.1f} s; then received {received / 1000:.0f} kb/s "
                f"({received / limit:.2f} of the limit), {loss:.1%} lost, {lossless} of {len(seconds)} seconds "
                f"lossless; {throttled.bandwidth}"
            )
            # Graceful: it settles on what fits instead of pushing more and losing it (without
            # congestion control every second is lossy, about 90 % lost: bench/throttle_bench.py);
            # a probe upward that fails costs a second or two of some loss now and then.
            assert lossless >= len(seconds) * 2 // 3 and loss < 0.2, (seconds, _describe(sfu, room_id, sid))
            assert _height(throttled) < top[1]
            metrics = scrape(generate_latest(REGISTRY).decode())
            node = sfu.cluster.node_id
            assert value(metrics, "parley_sfu_congested_subscribers", node=node, state="lower_layer") == 1
            assert value(metrics, "parley_sfu_congestions_total") > 0

            link.lift()
            climbed_in = await _until(lambda: _height(throttled) == top[1], 45, lambda: _describe(sfu, room_id, sid))
            print(f"limit lifted: back on the top layer in {climbed_in:.1f} s")
            assert _height(unthrottled) == top[1]
    finally:
        link.lift()
        await close_page(browser)
        if free.task is not None:
            free.task.cancel()
        await free.room.close()
