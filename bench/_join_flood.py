"""A flood of participants joining and leaving a room of an SFU, for ``sfu_bench --join-flood``;
run as its own process so that its CPU is neither the SFU's nor the measured clients':

    python -m bench._join_flood TARGET ROOM RATE [HOLD]

Starts one join every ``1 / RATE`` seconds (open loop: a slow SFU makes joins pile up, it does
not slow the flood). Each is signal only, on the SFU's signal stream as the SDK's first step:
``join``, then, like a browser that gives up before its media connect, it waits for the SFU's
subscriber offer (or ``HOLD`` seconds, default 1) without answering, and sends ``leave``. The
SFU admits it, tells everyone in the room, offers it the room's tracks (a peer connection,
ICE gathering, DTLS certificate), ends it and reports ``participant_aborted`` to control.

Prints ``flooding`` when its channel is up, and on SIGTERM (it stops starting joins, and gives
those under way 5 seconds) one JSON line of counts: ``started``, ``joined``, ``offers``,
``left`` (joined and left cleanly), ``failed``, and ``errors`` by kind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

import grpc

from bench._sfu_servers import BENCH_SECRET
from parley import VideoGrants, create_join_token
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc

if TYPE_CHECKING:
    from parley.sfu.v1.signal_service_pb2_grpc import SignalServiceAsyncStub

#: Seconds one join-and-leave may take before it counts as failed.
JOIN_TIMEOUT = 10.0
#: Seconds the joins under way get once the flood stops.
DRAIN = 5.0


class Flood:
    def __init__(self, target: str, room: str, rate: float, hold: float) -> None:
        self.target, self.room, self.rate, self.hold = target, room, rate, hold
        self.counts: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()

    def _token(self, identity: str) -> str:
        grants = VideoGrants(room=self.room)
        return create_join_token(key_id="bench", secret=BENCH_SECRET, identity=identity, grants=grants)[0]

    async def _join_and_leave(self, stub: SignalServiceAsyncStub, index: int) -> None:
        call = stub.Connect()
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=self._token(f"flood-{index}"))))
                first = await call.read()
                if not isinstance(first, sig.ConnectResponse) or first.WhichOneof("message") != "joined":
                    raise RuntimeError("no joined")
                self.counts["joined"] += 1
                offered = asyncio.Event()
                # One reader to the end of the call (a cancelled read would cancel the call).
                reader = asyncio.create_task(self._read_all(call, offered))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(offered.wait(), self.hold)
                await call.write(sig.ConnectRequest(leave=sig.LeaveRequest()))
                await call.done_writing()
                await reader
            self.counts["left"] += 1
        except Exception as error:  # counted, not raised: the flood goes on
            self.counts["failed"] += 1
            code = error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__
            self.errors[code] += 1
            call.cancel()

    async def _read_all(self, call: Any, offered: asyncio.Event) -> None:
        while isinstance(message := await call.read(), sig.ConnectResponse):
            if message.WhichOneof("message") == "offer" and not offered.is_set():
                self.counts["offers"] += 1
                offered.set()

    async def run(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        tasks: set[asyncio.Task[None]] = set()
        async with grpc.aio.insecure_channel(self.target) as channel:
            await channel.channel_ready()
            stub = sig_grpc.SignalServiceStub(channel)
            print("flooding", flush=True)
            start = loop.time()
            index = 0
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, start + index / self.rate - loop.time()))
                if stop.is_set():
                    break
                task = asyncio.create_task(self._join_and_leave(stub, index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                self.counts["started"] += 1
                index += 1
            seconds = loop.time() - start
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=DRAIN)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                self.counts["unfinished"] = len(pending)
        return {
            **{k: self.counts[k] for k in ("started", "joined", "offers", "left", "failed", "unfinished")},
            "seconds": seconds,
            "errors": dict(self.errors),
        }


if __name__ == "__main__":
    target, room, rate = sys.argv[1], sys.argv[2], float(sys.argv[3])
    hold = float(sys.argv[4]) if len(sys.argv) > 4 else 1.0
    print(json.dumps(asyncio.run(Flood(target, room, rate, hold).run())), flush=True)
