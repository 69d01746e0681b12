"""A subscriber bot for test_throttled.py, run in the test's network namespace (``python
tests/sfu/netns_bot.py TARGET TOKEN``): joins, asks for the browser's video at 1280×720, says
``subscribed SID``, then ``size W H T`` whenever the decoded frames change size (T: the
monotonic clock, which every process shares), and receives until its stdin closes."""

from __future__ import annotations

import asyncio
import sys
import time

from parley.room import Room, RoomEvent


def _video(event: RoomEvent) -> bool:
    return event.track is not None and event.track.info.kind == 2


async def main(target: str, token: str) -> None:
    room = await Room.connect(target, token)
    try:
        subscribed = await room.wait_for("track_subscribed", _video, within=60)
        assert subscribed.track is not None and subscribed.track.track is not None
        sid = subscribed.track.info.sid
        await room.set_track_settings([sid], width=1280, height=720)
        print(f"subscribed {sid}", flush=True)
        track = subscribed.track.track
        receiving = asyncio.ensure_future(_drain(track))
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        receiving.cancel()
    finally:
        await room.close()


async def _drain(track: object) -> None:
    size = (0, 0)
    while True:
        frame = await track.recv()  # type: ignore[attr-defined]
        if (frame.width, frame.height) != size:
            size = (frame.width, frame.height)
            print(f"size {frame.width} {frame.height} {time.monotonic():.3f}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
