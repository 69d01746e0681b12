"""Simulcast layer switches: how long a subscriber waits, after saying it shows a video at
another size, for the first frame of the layer that fits; against the baseline of the same
wait for a fresh subscription (the first frame of a track just subscribed to, which waits for
the same keyframe request), side by side in one run.

Chromium publishes its fake 1280×720 camera in three layers (meet.html ``#simulcast=1``)
through Parley's SFU; a Python subscriber decodes it and alternates between 320×180 and
640×360 views (the bottom and middle layers: the top one comes and goes with the browser's
bandwidth estimate), ``--switches`` times; another joins and leaves ``--switches`` times.

    python -m bench.simulcast_bench [--switches 10]

Prints p50 / p95 / max of both waits (request → first decoded frame of the new size; join →
first decoded frame), their ratio, and each layer's size and bitrate as the SFU received it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from typing import Any

from av import VideoFrame

from parley import VideoGrants, create_join_token
from parley.room import Room, RoomEvent
from sfu import SfuServer, SfuSettings
from tests.sfu.browser import build_sdk_bundle, close_page, gateway_for, open_page, read_event

SECRET = "simulcast-bench-secret-" + "x" * 32


def _token(identity: str, room: str) -> str:
    value, _ = create_join_token(
        key_id="parley", secret=SECRET, identity=identity, name=identity, grants=VideoGrants(room=room)
    )
    return value


def _browser_video(event: RoomEvent) -> bool:
    return event.track is not None and event.track.participant_identity == "browser" and event.track.info.kind == 2


class Frames:
    """Decodes a track all along (a track not read fills aiortc's queue with stale frames) and
    remembers when each frame of each size came."""

    def __init__(self, track: Any) -> None:
        self.seen: list[tuple[float, tuple[int, int]]] = []
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read(track))

    async def _read(self, track: Any) -> None:
        while True:
            frame = await track.recv()
            if isinstance(frame, VideoFrame):
                self.seen.append((time.perf_counter(), (frame.width, frame.height)))
                self.arrived.set()

    async def first(self, size: tuple[int, int] | None, after: float, within: float = 20) -> float:
        """When the first frame of ``size`` (any if None) after ``after`` came."""
        deadline = time.perf_counter() + within
        while time.perf_counter() < deadline:
            for when, seen in self.seen:
                if when > after and (size is None or seen == size):
                    return when
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), within)
        raise TimeoutError(f"no {size} frame within {within:g} s")


def _figures(waits: list[float]) -> str:
    ordered = sorted(waits)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"p50 {1000 * statistics.median(ordered):.0f} ms, p95 {1000 * p95:.0f} ms, max {1000 * ordered[-1]:.0f} ms"


async def main(switches: int) -> None:
    await build_sdk_bundle()
    settings = SfuSettings(token_secrets={"parley": SECRET}, grpc_address="127.0.0.1:0")
    async with SfuServer(settings) as sfu, gateway_for(sfu.target) as gateway:
        room_id = f"bench-{uuid.uuid4().hex[:6]}"
        page = await open_page(f"{gateway.url}/meet.html#token={_token('browser', room_id)}&simulcast=1")
        try:
            assert (await read_event(page))["event"] == "ready"
            watcher = await Room.connect(sfu.target, _token("watcher", room_id))
            subscribed = await watcher.wait_for("track_subscribed", _browser_video, within=30)
            assert subscribed.track is not None
            assert subscribed.track.track is not None
            sid, track = subscribed.track.info.sid, subscribed.track.track
            sessions = sfu.rooms.rooms[room_id].sessions.values()
            up = next(s.publisher.published[sid].up for s in sessions if sid in s.publisher.published)
            assert up is not None
            print("waiting for the browser's three layers (its bandwidth estimate ramps up)...", flush=True)
            for _ in range(600):
                if len(up.layers) == 3 and all(layer.height for layer in up.layers.values()):
                    break
                await asyncio.sleep(0.1)
            sizes = sorted((layer.width, layer.height) for layer in up.layers.values())
            # The bottom and middle layers: the top one comes and goes with the browser's
            # bandwidth estimate of the Python SFU (it stops when the estimate drops).
            small, big = sizes[0], sizes[1]
            print(f"layers: {', '.join(f'{w}x{h}' for w, h in sizes)}", flush=True)

            frames = Frames(track)
            switch_waits = []
            for index in range(switches):
                size = small if index % 2 == 0 else big
                await asyncio.sleep(1.0)
                asked = time.perf_counter()
                await watcher.set_track_settings([sid], width=size[0], height=size[1])
                switch_waits.append(await frames.first(size, asked) - asked)
            frames.task.cancel()

            join_waits = []
            for index in range(switches):
                await asyncio.sleep(1.0)
                started = time.perf_counter()
                fresh = await Room.connect(sfu.target, _token(f"fresh-{index}", room_id))
                got = await fresh.wait_for("track_subscribed", _browser_video, within=30)
                assert got.track is not None
                assert got.track.track is not None
                first = Frames(got.track.track)
                join_waits.append(await first.first(None, started) - started)
                first.task.cancel()
                await fresh.close()

            counted = {ssrc: layer.bytes for ssrc, layer in up.layers.items()}
            window_start = time.perf_counter()
            await asyncio.sleep(3.0)
            elapsed = time.perf_counter() - window_start
            bitrates = {
                f"{layer.rid} {layer.width}x{layer.height}": 8 * (layer.bytes - counted.get(ssrc, 0)) / elapsed / 1000
                for ssrc, layer in sorted(up.layers.items(), key=lambda item: item[1].height)
            }
            await watcher.close()
        finally:
            await close_page(page)

    print(f"\n## Simulcast layer switch ({switches} switches, {switches} fresh subscriptions)\n")
    print("| wait | figures |")
    print("|---|---|")
    print(f"| layer switch: request → first frame of the new layer | {_figures(switch_waits)} |")
    print(f"| baseline: join → first frame of a fresh subscription | {_figures(join_waits)} |")
    ratio = statistics.median(switch_waits) / statistics.median(join_waits)
    print(f"\nswitch / fresh subscription (p50): {ratio:.2f}")
    print("layers as the SFU received them: " + ", ".join(f"{name} {kbps:.0f} kb/s" for name, kbps in bitrates.items()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--switches", type=int, default=10)
    asyncio.run(main(parser.parse_args().switches))
