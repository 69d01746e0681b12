"""SFU forwarding cost: one publisher (pre-encoded 640×480 30 fps VP8 at 800 kb/s + Opus) and N
subscribers, through (a) Parley's SFU, which forwards RTP packets, and (b) aiortc's
``MediaRelay``, which decodes once and re-encodes per subscriber: the baseline, side by side
in one run. Each SFU runs in its own process, whose CPU is read from /proc; publisher and
subscribers run here and count packets without decoding.

    python -m bench.sfu_bench [--subscribers 1,4,16] [--seconds 10] [--relay-max 8] [--report fake] [--janus]

Prints per N: SFU CPU (% of one core) and per forwarded stream, forwarded RTP packets per
second and per core, video fps per subscriber, forwarding delay p50 / p99 (packet in ->
packet out, inside Parley's SFU), and Parley's ratio to the baseline.

``--janus`` adds a third SFU, Janus 1.1.2's VideoRoom (Debian ``janus``, C: an independent
production SFU; ``bench._janus``), with the same publisher and subscribers, and prints
Parley / Janus packets per core. Janus gathers no ICE candidates on loopback, so the whole run
(all three SFUs) re-executes itself inside a private network namespace with a veth pair
(``bench._netns``; needs root).

``--report fake`` has Parley's SFU report meeting events to a stand-in for control started
here (``down``: to an address nothing listens on, so events wait and are retried, and the
oldest are dropped once ``--report-buffer`` of them wait); reporting must not change the
figures.

A flood of joins must not slow forwarding either:

    python -m bench.sfu_bench --join-flood 20 [--subscribers 4] [--report fake|down] [--report-buffer 100]

measures Parley's SFU alone (no baseline: the question is Parley with and without the flood)
in three windows of one run, on the same connections: no flood; while another process
(``bench._join_flood``) has RATE participants a second join the same room and leave again
(signal only: join, wait up to ``--flood-hold`` seconds for the SFU's subscriber offer without
answering, leave; each is admitted, announced to everyone in the room, offered the publisher's
tracks, ended and reported ``participant_aborted``); and no flood again, whose difference from
the first is the noise. The same room is the harsher case: every join and leave is broadcast
to the measured participants and touches the room's state, and the SFU builds each one a
subscriber connection for the published tracks (``--flood-room NAME`` floods another room).
Prints per window SFU CPU, forwarded packets/s, video fps, forwarding delay p50 / p99, this
process's CPU, participants and, from the SFU's /metrics, events dropped and pending; then the
ratios flood / no flood and after / no flood, the joins the flood started and completed, and
the events the fake control took (``--report fake``) or the SFU dropped (``down``). With
``--join-flood`` N defaults to 4.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from prometheus_client.parser import text_string_to_metric_families

from bench._janus import JanusClients, JanusServer, publishing_connection
from bench._netns import run_inside
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
    """Takes every event (a stand-in for control, for ``--report fake``), counting them by kind
    (a re-sent event once)."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self._applied: dict[str, int] = {}

    async def ReportEvents(self, request: Any, context: Any) -> report_pb.ReportEventsResponse:
        applied = self._applied.get(request.node, 0)
        for event in request.events:
            if event.sequence > applied:
                self.kinds[str(event.WhichOneof("event"))] += 1
        self._applied[request.node] = max(applied, request.events[-1].sequence)
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
    """Parley's clients, in ``room`` on the SFU at ``url`` (``grpc://host:port``)."""

    def __init__(self, url: str, room: str = "bench") -> None:
        self.url = url
        self.room = room
        self.rooms: list[Room] = []
        self.counters, self.video = [], []

    def _token(self, identity: str) -> str:
        return create_join_token(
            key_id="bench", secret=BENCH_SECRET, identity=identity, grants=VideoGrants(room=self.room)
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
        publisher = publishing_connection()
        self.pcs.append(publisher)
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


async def _window(clients: _Clients | JanusClients, pid: int, seconds: float) -> tuple[float, float, float]:
    """After the clients settle, the server's CPU (fraction of a core), the packets the
    subscribers received per second and their video fps, over ``seconds``."""
    await asyncio.sleep(3)  # connect, first keyframes, encoders warm up
    packets0, video0, cpu0, t0 = (
        await _inbound_packets(clients.subscriber_pcs),
        sum(c.frames for c in clients.video),
        process_cpu_seconds(pid),
        time.monotonic(),
    )
    await asyncio.sleep(seconds)
    packets1, video1, cpu1, t1 = (
        await _inbound_packets(clients.subscriber_pcs),
        sum(c.frames for c in clients.video),
        process_cpu_seconds(pid),
        time.monotonic(),
    )
    elapsed = t1 - t0
    return (cpu1 - cpu0) / elapsed, (packets1 - packets0) / elapsed, (video1 - video0) / elapsed


async def measure_janus(subscribers: int, seconds: float) -> Result:
    async with JanusServer(_free_port()) as janus:
        clients = JanusClients(janus.url)
        try:
            await clients.start(subscribers)
            cpu, packets, fps = await _window(clients, janus.pid, seconds)
        finally:
            await clients.close()
    nan = float("nan")
    return Result("janus", subscribers, cpu, packets, fps / subscribers, nan, nan)


async def measure(
    mode: str, subscribers: int, seconds: float, control_target: str = "", report_buffer: int = 0
) -> Result:
    if mode == "janus":
        return await measure_janus(subscribers, seconds)
    port = _free_port()
    env = {
        **os.environ,
        "PARLEY_CONTROL_TARGET": control_target,
        "PARLEY_SFU_REPORT_API_KEY": "pk_bench.sk_bench",
        "PARLEY_SFU_REPORT_BUFFER": str(report_buffer or ""),
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once per run, before any media flows)
        [sys.executable, "-m", "bench._sfu_servers", mode, str(port)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert server.stdout is not None
    assert server.stdout.readline().strip() == "ready"
    clients: _Clients = _ParleyClients(f"grpc://127.0.0.1:{port}") if mode == "parley" else _RelayClients(port)
    try:
        await clients.start(subscribers)
        cpu, packets, fps = await _window(clients, server.pid, seconds)
    finally:
        await clients.close()
        server.terminate()
        # In a thread: the fake control runs in this loop and takes the SFU's last events.
        out, _ = await asyncio.to_thread(server.communicate, timeout=60)
    stats: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return Result(
        mode=mode,
        subscribers=subscribers,
        cpu=cpu,
        packets_per_second=packets,
        fps=fps / subscribers,
        p50_ms=stats["p50_ms"],
        p99_ms=stats["p99_ms"],
    )


@dataclass
class Window:
    """One measuring window of Parley's SFU in a ``--join-flood`` run."""

    label: str
    result: Result
    #: CPU of this process (publisher, subscribers, fake control), fraction of one core.
    clients_cpu: float
    #: Events the fake control took, by kind, during the window.
    events: Counter[str] = field(default_factory=Counter)
    #: From the SFU's /metrics: events dropped during the window, pending at its end, and
    #: participants at its end.
    dropped: float = 0.0
    pending: float = 0.0
    participants: float = 0.0


async def _scrape(url: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("parley_sfu_")
    }


async def _readline(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    return (await asyncio.to_thread(process.stdout.readline)).strip()


async def measure_flood(
    subscribers: int,
    seconds: float,
    rate: float,
    *,
    control_target: str = "",
    control: _Control | None = None,
    report_buffer: int = 0,
    flood_room: str = "bench",
    hold: float = 1.0,
) -> tuple[list[Window], dict[str, Any]]:
    """Parley's SFU forwarding for ``subscribers`` in three windows of one run: no flood, a
    flood of ``rate`` joins/s into ``flood_room``, no flood again (noise, and what lingers)."""
    port, metrics_port = _free_port(), _free_port()
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    env = {
        **os.environ,
        "PARLEY_CONTROL_TARGET": control_target,
        "PARLEY_SFU_REPORT_API_KEY": "pk_bench.sk_bench",
        "PARLEY_SFU_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
        "PARLEY_SFU_REPORT_BUFFER": str(report_buffer or ""),
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once per run, before any media flows)
        [sys.executable, "-m", "bench._sfu_servers", "parley", str(port)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert await _readline(server) == "ready"
    clients = _ParleyClients(f"grpc://127.0.0.1:{port}")
    flood: subprocess.Popen[str] | None = None
    flood_counts: dict[str, Any] = {}

    async def window(label: str) -> Window:
        server.send_signal(signal.SIGUSR1)  # forwarding delays from here on
        await _readline(server)
        kinds0 = Counter(control.kinds) if control is not None else Counter[str]()
        metrics0, packets0, video0, cpu0, own0, t0 = (
            await _scrape(metrics_url),
            await _inbound_packets(clients.subscriber_pcs),
            sum(c.frames for c in clients.video),
            process_cpu_seconds(server.pid),
            time.process_time(),
            time.monotonic(),
        )
        await asyncio.sleep(seconds)
        packets1, video1, cpu1, own1, t1 = (
            await _inbound_packets(clients.subscriber_pcs),
            sum(c.frames for c in clients.video),
            process_cpu_seconds(server.pid),
            time.process_time(),
            time.monotonic(),
        )
        server.send_signal(signal.SIGUSR1)
        delays = json.loads(await _readline(server))
        metrics1 = await _scrape(metrics_url)
        elapsed = t1 - t0
        result = Result(
            mode=label,
            subscribers=subscribers,
            cpu=(cpu1 - cpu0) / elapsed,
            packets_per_second=(packets1 - packets0) / elapsed,
            fps=(video1 - video0) / elapsed / subscribers,
            p50_ms=delays["p50_ms"],
            p99_ms=delays["p99_ms"],
        )
        return Window(
            label=label,
            result=result,
            clients_cpu=(own1 - own0) / elapsed,
            events=(Counter(control.kinds) - kinds0) if control is not None else Counter(),
            dropped=metrics1.get("parley_sfu_report_dropped_total", 0.0)
            - metrics0.get("parley_sfu_report_dropped_total", 0.0),
            pending=metrics1.get("parley_sfu_report_pending", 0.0),
            participants=metrics1.get("parley_sfu_participants", 0.0),
        )

    try:
        await clients.start(subscribers)
        await asyncio.sleep(3)  # connect, first keyframes
        windows = [await window("no flood")]
        flood = subprocess.Popen(  # noqa: ASYNC220 (started between windows)
            [sys.executable, "-m", "bench._join_flood", f"127.0.0.1:{port}", flood_room, str(rate), str(hold)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert await _readline(flood) == "flooding"
        await asyncio.sleep(1 + hold)  # joins under way reach their steady number
        windows.append(await window(f"flood {rate:g}/s"))
        flood.send_signal(signal.SIGTERM)
        flood_counts = json.loads(await _readline(flood))
        await asyncio.sleep(2)  # the last flood sessions close
        windows.append(await window("after"))
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
        await clients.close()
        server.terminate()
        await asyncio.to_thread(server.communicate, timeout=60)
    return windows, flood_counts


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b and not (math.isnan(a) or math.isnan(b)) else "—"


def _print_flood(windows: list[Window], flood: dict[str, Any], *, report: str, flood_room: str) -> None:
    n = windows[0].result.subscribers
    columns = ["window", "N", "SFU CPU % of a core", "forwarded pkt/s", "video fps/sub", "delay p50 / p99 ms"]
    columns += ["clients CPU %", "participants", "events to control", "dropped", "pending"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for w in windows:
        r = w.result
        delay = "—" if math.isnan(r.p50_ms) else f"{r.p50_ms:.2f} / {r.p99_ms:.2f}"
        events = "—" if report != "fake" else str(w.events.total())
        print(
            f"| {r.mode} | {n} | {100 * r.cpu:.1f} | {r.packets_per_second:.0f} | {r.fps:.1f} | {delay} "
            f"| {100 * w.clients_cpu:.1f} | {w.participants:.0f} | {events} | {w.dropped:.0f} | {w.pending:.0f} |"
        )
    print()
    before, during, after = (w.result for w in windows)
    for label, other in (("flood / no flood", during), ("after / no flood (noise)", after)):
        print(
            f"N={n} {label}: pkt/s {_ratio(other.packets_per_second, before.packets_per_second)}, "
            f"fps {_ratio(other.fps, before.fps)}, delay p50 {_ratio(other.p50_ms, before.p50_ms)} "
            f"p99 {_ratio(other.p99_ms, before.p99_ms)}, SFU CPU {_ratio(other.cpu, before.cpu)}"
        )
    seconds = flood.get("seconds", 0.0)
    errors = f" {flood['errors']}" if flood.get("errors") else ""
    print(
        f"N={n} flood into the {'same room' if flood_room == 'bench' else 'room ' + flood_room}: "
        f"{flood.get('started', 0)} joins started in {seconds:.1f} s "
        f"({flood.get('started', 0) / seconds if seconds else 0:.1f}/s), {flood.get('joined', 0)} joined, "
        f"{flood.get('offers', 0)} got the SFU's offer, {flood.get('left', 0)} left cleanly, "
        f"{flood.get('failed', 0)} failed{errors}, {flood.get('unfinished', 0)} unfinished"
    )
    kinds = windows[1].events
    if report == "fake":
        print(f"N={n} events the fake control took during the flood window: {dict(kinds) or 'none'}")
    else:
        print(
            f"N={n} report {report}: {windows[1].dropped:.0f} events dropped by the SFU during the flood window, "
            f"{windows[-1].pending:.0f} pending at the end"
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
        relay, janus = by_key.get(("relay", n)), by_key.get(("janus", n))
        if mode == "parley" and relay is not None and parley.cpu:
            print(
                f"N={n}: Parley uses {relay.cpu / parley.cpu:.1f}x less CPU than MediaRelay and forwards "
                f"{parley.per_core / relay.per_core:.1f}x more packets per core"
            )
        if mode == "parley" and janus is not None and janus.cpu:
            print(
                f"N={n}: Parley / Janus: packets per core {parley.per_core / janus.per_core:.2f}, "
                f"CPU {parley.cpu / janus.cpu:.2f}"
            )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", help="comma-separated N (default 1,4,16; with --join-flood 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measuring window per run")
    parser.add_argument("--relay-max", type=int, default=8, help="largest N for the baseline (it saturates)")
    parser.add_argument(
        "--report", choices=("off", "fake", "down"), default="off", help="Parley's SFU reports meetings to control"
    )
    parser.add_argument(
        "--join-flood",
        type=float,
        default=0.0,
        metavar="RATE",
        help="measure Parley's SFU without, with and after a flood of RATE signal-only joins/s (no baseline)",
    )
    parser.add_argument(
        "--flood-room", default="bench", help="room the flood joins (default: the measured one, 'bench')"
    )
    parser.add_argument(
        "--flood-hold", type=float, default=1.0, help="seconds a flood join waits for the SFU's offer before leaving"
    )
    parser.add_argument(
        "--report-buffer", type=int, default=0, help="events the SFU keeps for control (default: the SFU's, 10000)"
    )
    parser.add_argument(
        "--janus",
        action="store_true",
        help="Janus 1.1.2's VideoRoom as a third peer (Debian janus); the run moves into a private network "
        "namespace (root)",
    )
    args = parser.parse_args()
    if args.janus:
        if shutil.which("janus") is None:
            raise SystemExit("--janus needs Janus 1.1.2 (Debian: apt-get install janus)")
        run_inside("bench.sfu_bench")
    sizes = [int(x) for x in (args.subscribers or ("4" if args.join_flood > 0 else "1,4,16")).split(",")]
    stop_decoding()
    control_target, control, fake = "", None, None
    if args.report == "fake":
        control, fake = grpc.aio.server(), _Control()
        report_grpc.add_SfuReportServiceServicer_to_server(fake, control)
        control_target = f"127.0.0.1:{control.add_insecure_port('127.0.0.1:0')}"
        await control.start()
    elif args.report == "down":
        control_target = f"127.0.0.1:{_free_port()}"
    if args.join_flood > 0:
        for n in sizes:
            windows, flood = await measure_flood(
                n,
                args.seconds,
                args.join_flood,
                control_target=control_target,
                control=fake,
                report_buffer=args.report_buffer,
                flood_room=args.flood_room,
                hold=args.flood_hold,
            )
            _print_flood(windows, flood, report=args.report, flood_room=args.flood_room)
            print()
        if control is not None:
            await control.stop(0)
        return
    results = []
    for n in sizes:
        for mode in ("parley", "relay", "janus") if args.janus else ("parley", "relay"):
            if mode == "relay" and n > args.relay_max:
                continue
            result = await measure(mode, n, args.seconds, control_target, args.report_buffer)
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
