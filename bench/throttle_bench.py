"""A subscriber on a slow downlink, with the SFU's congestion control on and off (the baseline:
every subscriber gets the layer it asks for, as before congestion control), side by side in
one run.

Chromium publishes its fake 1280×720 camera in three layers (meet.html ``#simulcast=1``); a
bot on loopback and a bot in a private network namespace both ask for 1280×720. Once the top
layer flows, the namespace's downlink is limited (``tc tbf``, a 200 ms queue) to the geometric
mean of the bottom and top layers' rates; after ``--settle`` seconds, ``--seconds`` seconds are
measured; then the limit is lifted.

    sudo python -m bench.throttle_bench [--seconds 15] [--settle 20] [--repeat 1]

Prints per mode: seconds from the limit until the SFU forwards the throttled bot a lower layer,
what it received against the limit (kb/s through the limit), the packets the limit dropped,
the seconds without a drop, whether the loopback bot kept the
top layer, and seconds from lifting the limit until the throttled bot gets the top layer again
(the layers the SFU forwards: a bot decoding 1280×720 on a busy machine falls seconds behind
what it receives); and the on / off
ratios. Needs root (a network namespace) and chromium (./scripts/setup --test).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from parley import VideoGrants, create_join_token
from parley.room import Room
from sfu import SfuServer, SfuSettings
from tests.sfu.browser import build_sdk_bundle, close_page, gateway_for, open_page, read_event
from tests.sfu.netns import HOST_ADDRESS, Link, bot_in, namespace

SECRET = "throttle-bench-secret-" + "x" * 32


def _token(identity: str, room: str) -> str:
    value, _ = create_join_token(
        key_id="parley", secret=SECRET, identity=identity, name=identity, grants=VideoGrants(room=room)
    )
    return value


@dataclass
class Result:
    limit: float = 0.0
    dropped_layer_in: float | None = None
    received: float = 0.0
    loss: float = 0.0
    lossless: int = 0
    seconds: int = 0
    others_kept_top: bool = True
    climbed_in: float | None = None
    layers: dict[str, int] = field(default_factory=dict)


async def _seconds_until(condition: Callable[[], bool], within: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() < started + within:
        if condition():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    return None


async def run(congestion_control: bool, device: str, netns: str, settle: float, seconds: int) -> Result:
    result = Result()
    link = Link(device)
    settings = SfuSettings(
        token_secrets={"parley": SECRET}, grpc_address=f"{HOST_ADDRESS}:0", congestion_control=congestion_control
    )
    async with SfuServer(settings) as sfu, gateway_for(sfu.target) as gateway:
        room_id = f"bench-{uuid.uuid4().hex[:6]}"
        page = await open_page(f"{gateway.url}/meet.html#token={_token('browser', room_id)}&simulcast=1")
        free = await Room.connect(sfu.target, _token("free", room_id))
        try:
            assert (await read_event(page))["event"] == "ready"
            async with bot_in(netns, sfu.target, _token("throttled", room_id)) as bot:
                assert bot.stdout is not None
                line = (await asyncio.wait_for(bot.stdout.readline(), 90)).decode()
                assert line.startswith("subscribed"), line
                sid = line.split()[1]
                await free.set_track_settings([sid], width=1280, height=720)
                session = sfu.rooms.rooms[room_id].sessions
                up = session["browser"].publisher.published[sid].up
                assert up is not None

                def height(identity: str) -> int:
                    down = session[identity].subscriber.subscriptions[sid].down
                    return down.layer.height if down is not None and down.layer is not None else 0

                print("waiting for the browser's top layer (its bandwidth estimate ramps up)...", flush=True)
                for _ in range(900):
                    layers = sorted(up.layers.values(), key=lambda layer: layer.height)
                    flowing = layers and layers[-1].height == 720 and layers[-1].bitrate > 3 * layers[0].bitrate
                    if flowing and height("throttled") == height("free") == 720:
                        break
                    await asyncio.sleep(0.1)
                else:
                    raise SystemExit(f"the browser's top layer did not come: {up.layers}")
                result.layers = {layer.rid: round(layer.bitrate / 1000) for layer in layers}
                result.limit = (layers[0].bitrate * layers[-1].bitrate) ** 0.5
                limited_at = time.monotonic()
                link.limit(int(result.limit))
                result.dropped_layer_in = await _seconds_until(lambda: height("throttled") < 720, settle)
                await asyncio.sleep(max(0.0, settle - (time.monotonic() - limited_at)))
                samples = []
                for _ in range(seconds):
                    before = link.counters()
                    await asyncio.sleep(1)
                    after = link.counters()
                    samples.append(tuple(a - b for a, b in zip(after, before, strict=True)))
                    result.others_kept_top &= height("free") == 720
                result.seconds = len(samples)
                result.received = sum(s[0] for s in samples) * 8 / len(samples)
                dropped = sum(s[2] for s in samples)
                result.loss = dropped / max(1, dropped + sum(s[1] for s in samples))
                result.lossless = sum(1 for s in samples if s[2] == 0)
                link.lift()
                result.climbed_in = await _seconds_until(lambda: height("throttled") == 720, 45)
        finally:
            link.lift()
            await free.close()
            await close_page(page)
    return result


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} s"


async def main(seconds: int, settle: float, repeat: int) -> None:
    await build_sdk_bundle()
    results: dict[bool, list[Result]] = {True: [], False: []}
    with namespace() as (netns, device):
        for index in range(repeat):
            for mode in (True, False) if index % 2 == 0 else (False, True):
                print(f"run {index + 1}: congestion control {'on' if mode else 'off'}", flush=True)
                results[mode].append(await run(mode, device, netns, settle, seconds))
    print(f"\n## A subscriber on a slow downlink ({seconds} s measured, {settle:g} s after the limit)\n")
    print("| congestion control | limit | layers (kb/s) | lower layer after | received | lost at the limit "
          "| seconds without loss | others kept the top layer | top layer again after the limit lifted |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for mode, runs in results.items():
        for r in runs:
            print(
                f"| {'on' if mode else 'off'} | {r.limit / 1000:.0f} kb/s | {r.layers} "
                f"| {_seconds(r.dropped_layer_in)} "
                f"| {r.received / 1000:.0f} kb/s ({r.received / r.limit:.2f} of the limit) | {r.loss:.1%} "
                f"| {r.lossless} of {r.seconds} | {'yes' if r.others_kept_top else 'no'} | {_seconds(r.climbed_in)} |"
            )
    on = statistics.median(r.loss for r in results[True])
    off = statistics.median(r.loss for r in results[False])
    print(f"\nlost at the limit, on / off (median): {on:.1%} / {off:.1%} = {on / off if off else float('nan'):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.seconds, arguments.settle, arguments.repeat))
