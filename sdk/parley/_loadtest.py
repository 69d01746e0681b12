"""``parley load-test``: fills a room with publishers of pre-encoded VP8 / Opus and subscribers
that count what arrives without decoding it, then reports per-subscriber video fps, packet
loss and join time, and (given its pid, on this machine) the SFU process's CPU and memory."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import RTCPeerConnection

from ._errors import ParleyError
from ._loadmedia import FrameCounter, audio_track, stop_decoding, video_track
from .room import Room

#: Makes a join token (and the SFU URL) for an identity.
TokenSource = Callable[[str], Awaitable[tuple[str, str]]]


@dataclass
class SubscriberReport:
    identity: str
    join_seconds: float
    video_fps: float = 0.0
    audio_packets_per_second: float = 0.0
    packets: int = 0
    lost: int = 0

    @property
    def loss(self) -> float:
        total = self.packets + self.lost
        return self.lost / total if total else 0.0


@dataclass
class LoadReport:
    seconds: float
    subscribers: list[SubscriberReport] = field(default_factory=list)
    publisher_join_seconds: list[float] = field(default_factory=list)
    sfu_cpu_percent: float | None = None
    sfu_rss_mb: float | None = None


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):  # it ended while being read
            continue
    return found


def process_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def inbound_counts(pc: RTCPeerConnection | None) -> dict[str, tuple[int, int]]:
    """kind -> (packets received, packets lost) on a subscriber connection."""
    totals: dict[str, tuple[int, int]] = {}
    if pc is None:
        return totals
    for stats in (await pc.getStats()).values():
        if getattr(stats, "type", "") == "inbound-rtp":
            packets, lost = totals.get(stats.kind, (0, 0))
            totals[stats.kind] = (packets + stats.packetsReceived, lost + max(0, stats.packetsLost))
    return totals


async def run_load_test(
    tokens: TokenSource,
    *,
    video_publishers: int,
    audio_publishers: int,
    subscribers: int,
    seconds: float,
    sfu_pid: int | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> LoadReport:
    """Joins the publishers, then the subscribers, measures for ``seconds``, and leaves."""
    stop_decoding()  # this process only counts what it receives
    rooms: list[Room] = []
    counters: list[FrameCounter] = []
    report = LoadReport(seconds=seconds)
    # Identities unique to this run: a second load test on the same room would otherwise take
    # over (and disconnect) this one's participants, as a rejoin under the same identity does.
    run = secrets.token_hex(3)
    try:
        for index in range(max(video_publishers, audio_publishers)):
            url, token = await tokens(f"load-publisher-{index}-{run}")
            started = time.monotonic()
            room = await Room.connect(url, token, auto_subscribe=False)
            rooms.append(room)
            if index < video_publishers:
                await room.publish(video_track(), source="camera")
            if index < audio_publishers:
                await room.publish(audio_track(), source="microphone")
            report.publisher_join_seconds.append(time.monotonic() - started)
            progress(f"publisher {index + 1} joined")
        listeners: list[tuple[Room, SubscriberReport, list[FrameCounter]]] = []
        for index in range(subscribers):
            url, token = await tokens(f"load-subscriber-{index}-{run}")
            started = time.monotonic()
            room = await Room.connect(url, token)
            rooms.append(room)
            video: list[FrameCounter] = []
            for _ in range(video_publishers + audio_publishers):
                event = await room.wait_for("track_subscribed", within=30)
                if event.track is None or event.track.track is None:
                    raise ParleyError("the SFU announced a subscription without its track")
                counter = FrameCounter.start(event.track.track)
                counters.append(counter)
                if event.track.track.kind == "video":
                    video.append(counter)
            listeners.append(
                (room, SubscriberReport(f"load-subscriber-{index}-{run}", time.monotonic() - started), video)
            )
            progress(f"subscriber {index + 1} joined")
        await asyncio.sleep(2)  # first keyframes
        before = [await inbound_counts(room._subscriber) for room, _, _ in listeners]
        frames_before = [sum(c.frames for c in video) for _, _, video in listeners]
        cpu_before = process_cpu_seconds(sfu_pid) if sfu_pid else 0.0
        started = time.monotonic()
        progress(f"measuring for {seconds:g} s")
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - started
        after = [await inbound_counts(room._subscriber) for room, _, _ in listeners]
        if sfu_pid:
            report.sfu_cpu_percent = 100 * (process_cpu_seconds(sfu_pid) - cpu_before) / elapsed
            report.sfu_rss_mb = process_rss_mb(sfu_pid)
        for (_, sub, video), start, end, frames0 in zip(listeners, before, after, frames_before, strict=True):
            for kind, (packets, lost) in end.items():
                packets0, lost0 = start.get(kind, (0, 0))
                sub.packets += packets - packets0
                sub.lost += lost - lost0
                if kind == "audio":
                    sub.audio_packets_per_second = (packets - packets0) / elapsed / max(1, audio_publishers)
            sub.video_fps = (sum(c.frames for c in video) - frames0) / elapsed / max(1, video_publishers)
            report.subscribers.append(sub)
    finally:
        for counter in counters:
            counter.stop()
        for room in rooms:
            await room.close()
    return report


def format_report(report: LoadReport) -> str:
    """The report as a text table."""
    lines = [
        "| subscriber | join s | video fps (per track) | audio pkt/s (per track) | packet loss |",
        "|---|---|---|---|---|",
    ]
    for sub in report.subscribers:
        lines.append(
            f"| {sub.identity} | {sub.join_seconds:.2f} | {sub.video_fps:.1f} | "
            f"{sub.audio_packets_per_second:.1f} | {100 * sub.loss:.2f} % |"
        )
    if report.publisher_join_seconds:
        joins = report.publisher_join_seconds
        lines.append(f"publishers joined and published in {min(joins):.2f}-{max(joins):.2f} s")
    if report.sfu_cpu_percent is not None:
        lines.append(f"SFU process: {report.sfu_cpu_percent:.1f} % of a core, {report.sfu_rss_mb:.0f} MB resident")
    else:
        lines.append("SFU process: not measured (pass --sfu-pid of an SFU on this machine)")
    return "\n".join(lines)
