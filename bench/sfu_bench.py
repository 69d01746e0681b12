"""SFU forwarding cost: one publisher (pre-encoded 640×480 30 fps VP8 at 800 kb/s + Opus) and N
subscribers, through (a) Parley's SFU, which forwards RTP packets, and (b) aiortc's
``MediaRelay``, which decodes once and re-encodes per subscriber: the baseline, side by side
in one run. Each SFU runs in its own process, whose CPU is read from /proc; publisher and
subscribers run here and count packets without decoding.

    python -m bench.sfu_bench [--subscribers 1,4,16] [--seconds 10] [--relay-max 8] [--report fake]

Prints per N: SFU CPU (% of one core) and per forwarded stream, forwarded RTP packets per
second and per core, video fps per subscriber, forwarding delay p50 / p99 (packet in ->
packet out, inside Parley's SFU), and Parley's ratio to the baseline.

``--report fake`` has Parley's SFU report meeting events to a stand-in for control started
here (``down``: to an address nothing listens on, so events wait and are retried); reporting
must not change the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from bench._sfu_servers import BENCH_SECRET
from parley import VideoGrants, create_join_token
from parley._loadmedia import FrameCounter, audio_track, stop_decoding, video_track
from parley._loadtest import inbound_counts, process_cpu_seconds
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc
from parley.room import Room


@dataclass
class Result:
    mode: str
    subscribers: int
    cpu: float  # fraction of one core
    packets_per_second: float
    fps: float
    p50_ms: float
    p99_ms: float

    @property
    def per_stream(self) -> float:
        return 100 * self.cpu / (2 * self.subscribers)

    @property
    def per_core(self) -> float:
        return self.packets_per_second / self.cpu if self.cpu else math.inf


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Control(report_grpc.SfuReportServiceServicer):
    """Takes every event (a stand-in for control, for ``--report fake``)."""

    async def ReportEvents(self, request: Any, context: Any) -> report_pb.ReportEventsResponse:
        return report_pb.ReportEventsResponse(applied_sequence=request.events[-1].sequence)


class _Clients:
    """A publisher and subscribers of one mode; ``subscriber_pcs`` are what receive."""

    subscriber_pcs: list[RTCPeerConnection]
    #: Per received track: frames drained from it (video ones in ``video``).
    counters: list[FrameCounter]
    video: list[FrameCounter]

    def _count(self, track: Any) -> None:
        counter = FrameCounter.start(track)
        self.counters.append(counter)
        if track.kind == "video":
            self.video.append(counter)

    async def start(self, subscribers: int) -> None: ...
    async def close(self) -> None: ...


class _ParleyClients(_Clients):
    def __init__(self, port: int) -> None:
        self.url = f"grpc://127.0.0.1:{port}"
        self.rooms: list[Room] = []
        self.counters, self.video = [], []

    def _token(self, identity: str) -> str:
        return create_join_token(
            key_id="bench", secret=BENCH_SECRET, identity=identity, grants=VideoGrants(room="bench")
        )[0]

    async def start(self, subscribers: int) -> None:
        publisher = await Room.connect(self.url, self._token("publisher"))
        self.rooms.append(publisher)
        await publisher.publish(video_track(), source="camera")
        await publisher.publish(audio_track(), source="microphone")
        for index in range(subscribers):
            room = await Room.connect(self.url, self._token(f"subscriber-{index}"))
            self.rooms.append(room)
            for _ in range(2):
                event = await room.wait_for("track_subscribed")
                assert event.track is not None
                self._count(event.track.track)
        self.subscriber_pcs = [r._subscriber for r in self.rooms[1:] if r._subscriber is not None]

    async def close(self) -> None:
        for counter in self.counters:
            counter.stop()
        for room in self.rooms:
            await room.close()


class _RelayClients(_Clients):
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.pcs: list[RTCPeerConnection] = []
        self.counters, self.video = [], []

    async def _negotiate(self, pc: RTCPeerConnection, path: str) -> None:
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=30) as http:
            answer = (await http.post(self.url + path, json={"sdp": pc.localDescription.sdp})).json()
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

    async def start(self, subscribers: int) -> None:
        publisher = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.append(publisher)
        for track in (video_track(), audio_track()):
            transceiver = publisher.addTransceiver(track, direction="sendonly")
            if track.kind == "video":
                codecs = transceiver.sender.getCapabilities("video").codecs
                transceiver.setCodecPreferences([c for c in codecs if c.mimeType in ("video/VP8", "video/rtx")])
        await self._negotiate(publisher, "/publish")
        await asyncio.sleep(2)  # the relay learns the tracks once media flows
        self.subscriber_pcs = []
        for _ in range(subscribers):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            pc.on("track", self._count)
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver("audio", direction="recvonly")
            await self._negotiate(pc, "/subscribe")
            self.pcs.append(pc)
            self.subscriber_pcs.append(pc)

    async def close(self) -> None:
        for counter in self.counters:
            counter.stop()
        for pc in self.pcs:
            await pc.close()


async def _inbound_packets(pcs: list[RTCPeerConnection]) -> int:
    counts = [await inbound_counts(pc) for pc in pcs]
    return sum(packets for kinds in counts for packets, _ in kinds.values())


async def measure(mode: str, subscribers: int, seconds: float, control_target: str = "") -> Result:
    port = _free_port()
    env = {**os.environ, "PARLEY_CONTROL_TARGET": control_target, "PARLEY_SFU_REPORT_API_KEY": "pk_bench.sk_bench"}
    server = subprocess.Popen(  # noqa: ASYNC220 (started once per run, before any media flows)
        [sys.executable, "-m", "bench._sfu_servers", mode, str(port)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    clients: _Clients = _ParleyClients(port) if mode == "parley" else _RelayClients(port)
    try:
        await clients.start(subscribers)
        await asyncio.sleep(3)  # connect, first keyframes, encoders warm up
        packets0, video0, cpu0, t0 = (
            await _inbound_packets(clients.subscriber_pcs),
            sum(c.frames for c in clients.video),
            process_cpu_seconds(server.pid),
            time.monotonic(),
        )
        await asyncio.sleep(seconds)
        packets1, video1, cpu1, t1 = (
            await _inbound_packets(clients.subscriber_pcs),
            sum(c.frames for c in clients.video),
            process_cpu_seconds(server.pid),
            time.monotonic(),
        )
    finally:
        await clients.close()
        server.terminate()
        out, _ = server.communicate(timeout=60)
    stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    elapsed = t1 - t0
    return Result(
        mode=mode,
        subscribers=subscribers,
        cpu=(cpu1 - cpu0) / elapsed,
        packets_per_second=(packets1 - packets0) / elapsed,
        fps=(video1 - video0) / elapsed / subscribers,
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
    )


def _print(results: list[Result]) -> None:
    columns = ["SFU", "N", "CPU % of a core", "CPU % per stream", "forwarded pkt/s", "pkt/s per core"]
    columns += ["video fps/sub", "delay p50 / p99 ms"]
    print("| " + " | ".join(columns) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        delay = "—" if math.isnan(r.p50_ms) else f"{r.p50_ms:.2f} / {r.p99_ms:.2f}"
        print(
            f"| {r.mode} | {r.subscribers} | {100 * r.cpu:.1f} | {r.per_stream:.2f} | {r.packets_per_second:.0f} "
            f"| {r.per_core:.0f} | {r.fps:.1f} | {delay} |"
        )
    print()
    by_key = {(r.mode, r.subscribers): r for r in results}
    for (mode, n), parley in sorted(by_key.items()):
        relay = by_key.get(("relay", n))
        if mode == "parley" and relay is not None and parley.cpu:
            print(
                f"N={n}: Parley uses {relay.cpu / parley.cpu:.1f}x less CPU than MediaRelay and forwards "
                f"{parley.per_core / relay.per_core:.1f}x more packets per core"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="1,4,16", help="comma-separated N")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per run")
    parser.add_argument("--relay-max", type=int, default=8, help="largest N for the baseline (it saturates)")
    parser.add_argument(
        "--report", choices=("off", "fake", "down"), default="off", help="Parley's SFU reports meetings to control"
    )
    args = parser.parse_args()
    stop_decoding()
    control_target, control = "", None
    if args.report == "fake":
        control = grpc.aio.server()
        report_grpc.add_SfuReportServiceServicer_to_server(_Control(), control)
        control_target = f"127.0.0.1:{control.add_insecure_port('127.0.0.1:0')}"
        await control.start()
    elif args.report == "down":
        control_target = f"127.0.0.1:{_free_port()}"
    results = []
    for n in [int(x) for x in args.subscribers.split(",")]:
        for mode in ("parley", "relay"):
            if mode == "relay" and n > args.relay_max:
                continue
            result = await measure(mode, n, args.seconds, control_target)
            print(
                f"{mode} N={n}: {100 * result.cpu:.1f} % CPU, {result.packets_per_second:.0f} pkt/s",
                file=sys.stderr,
                flush=True,
            )
            results.append(result)
    if control is not None:
        await control.stop(0)
    _print(results)


if __name__ == "__main__":
    asyncio.run(main())
