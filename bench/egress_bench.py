"""Recording cost: Parley's egress recorder against the ffmpeg command line, side by side in one
run, on the same media.

The stack runs here, as in ``tests/egress/test_recording.py``: an SFU, control on SQLite and the
egress service with its recorders on a local Ray (one recorder process per recording). N bots
(``--publishers``) each publish 640×480 30 fps VP8 + Opus, pre-encoded (the SDK's load-test
media, looped every 10 s, so the bots cost no encoding). Then:

- a 720p30 GRID composite (H.264 + AAC, fragmented MP4) records the room for ``--seconds``;
  the recorder process's CPU is read from /proc (its pid from the named Ray actor) a few
  seconds after it went active and again at the end: cores = CPU seconds / wall seconds, split
  by thread (/proc/<pid>/task). Speed = media seconds written / wall seconds recorded; frames
  dropped = duration × 30 - the video packets in the file;
- an audio-only recording (Ogg/Opus) of the same room: cores;
- the baseline: ffmpeg 5.1 (``apt-get install ffmpeg``) making the same composite from the same
  inputs read from files (the VP8 packets in IVF, the Opus packets in Ogg, each looped):
  ``xstack`` of the N videos scaled to 640×360 tiles on 1280×720, ``amix`` of the N audios,
  libx264 superfast (the recorder's 720p30 preset) 3 Mb/s, a keyframe every 60 frames, no
  B-frames (as the recorder), AAC,
  fragmented MP4, ``-t --seconds`` as fast as it goes (no ``-re``). Its CPU comes from
  ``getrusage(RUSAGE_CHILDREN)``. It runs first, alone; the recorder shares the machine with
  this process (SFU, bots, control), whose CPU is printed too.

Prints the recorder's cores at real time, ffmpeg's CPU seconds per recorded second, their
ratio, and LiveKit's budget (4 CPUs per room composite) for scale.

``--concurrency-max N`` then records 1, 2, ... N rooms at once (each with ``--publishers``
bots, ``--step-seconds`` each) on a second egress server whose cost model is scaled down
(``EgressSettings(cpu_scale=...)``) so that it admits them all, and reports the most that
kept up: none dropped more than 1 % of its frames or ended over a second behind the wall
clock. It also reports how many composites the egress admits at its default cost model.

    python -m bench.egress_bench [--seconds 60] [--publishers 4] [--concurrency-max N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import resource
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av
import grpc
import ray

from control import ALL_SCOPES, ControlServer, ControlSettings
from egress import EgressServer, EgressSettings
from parley import Client
from parley._loadmedia import FPS, audio_packets, audio_track, video_packets, video_track
from parley._loadtest import process_cpu_seconds
from parley.control.v1 import room_service_pb2 as room_pb
from parley.egress.v1 import egress_service_pb2 as pb
from parley.egress.v1 import egress_service_pb2_grpc as pb_grpc
from parley.egress.v1 import resources_pb2 as res
from parley.room import Room
from parley.server.ray_runtime import start_ray
from sfu import SfuServer, SfuSettings

#: The baseline encodes as the recorder does at 720p30 (egress/_costs.py), so that the ratio
#: compares the pipelines, not two encoder settings.
X264_PRESET = "superfast"

if TYPE_CHECKING:
    from parley.egress.v1.egress_service_pb2_grpc import EgressServiceAsyncStub

TOKEN_SECRET = "bench-token-secret-" + "e" * 32
#: LiveKit's egress reserves this many CPUs for a room composite (its documented cost).
LIVEKIT_ROOM_COMPOSITE_CPUS = 4.0
#: A recording keeps up when it drops at most this share of its frames...
DROP_LIMIT = 0.01
#: ... and its file ends at most this many seconds short of the wall time it recorded (the
#: recorder builds its output 0.3 s behind real time by design).
LAG_LIMIT = 1.0
#: Seconds between a recording going active and the start of its measured window (tracks
#: still connecting, decoders waiting for a keyframe).
WARM_UP = 3.0
#: The cost scale of the concurrency server: small enough that it never refuses a start.
LOW_CPU_SCALE = 0.01
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the stack ----------------------------------------------------------------------------------


@dataclass
class Stack:
    control: ControlServer
    sfu: SfuServer
    admin: Client
    metadata: tuple[tuple[str, str], ...]
    recordings: Path
    settings: EgressSettings


@contextlib.asynccontextmanager
async def _stack(folder: Path) -> AsyncIterator[Stack]:
    sfu_settings = SfuSettings(token_secrets={"parley": TOKEN_SECRET}, grpc_address="127.0.0.1:0", empty_timeout=5.0)
    async with SfuServer(sfu_settings) as sfu:
        control_settings = ControlSettings(
            database_url=f"sqlite:///{folder / 'control.db'}",
            token_secret=TOKEN_SECRET,
            dev_login=True,
            sfu_url=f"grpc://{sfu.target}",
        )
        async with ControlServer(control_settings) as control:
            node, node_secret = await control.control.create_api_key(
                None, "egress node", ["egress:report", "tokens:create"]
            )
            key, key_secret = await control.control.create_api_key(None, "bench admin", ALL_SCOPES)
            bearer = f"{key.id}.{key_secret}"
            settings = EgressSettings(
                control_target=control.target,
                api_key=f"{node.id}.{node_secret}",
                recordings_dir=folder / "recordings",
                spool_dir=folder / "spool",
                report_interval=1.0,
                empty_room_timeout=10.0,
            )
            admin = Client(control.target, bearer=bearer)
            try:
                yield Stack(
                    control, sfu, admin, (("authorization", f"Bearer {bearer}"),), folder / "recordings", settings
                )
            finally:
                await admin.aclose()


@contextlib.asynccontextmanager
async def _egress(settings: EgressSettings) -> AsyncIterator[EgressServiceAsyncStub]:
    async with EgressServer(settings) as server:
        channel = grpc.aio.insecure_channel(server.target)
        try:
            yield pb_grpc.EgressServiceStub(channel)
        finally:
            await channel.close()


async def _publishers(stack: Stack, room: str, count: int) -> list[Room]:
    """``count`` bots in ``room``, each publishing pre-encoded camera and microphone tracks."""
    bots: list[Room] = []
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    try:
        for index in range(count):
            identity = f"bot-{index}"
            grant = await stack.admin.rooms.create_join_token(
                room, identity=identity, display_name=f"Bot {index}", grants=grants
            )
            bot = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
            bots.append(bot)
            await bot.publish(video_track(), source="camera")
            await bot.publish(audio_track(), source="microphone")
    except BaseException:
        await _close(bots)
        raise
    return bots


async def _close(bots: Sequence[Room]) -> None:
    for bot in bots:
        with contextlib.suppress(Exception):
            await bot.close()


# --- one recording, measured --------------------------------------------------------------------


def _thread_ticks(pid: int) -> dict[int, tuple[float, int]]:
    """tid -> (when it started, in seconds after the process; user + system clock ticks) of each
    thread of ``pid``. Python 3.11 does not name threads (all are ``ray::...``), so the start
    order is what tells them apart: Ray's and the event loop's first, then the recorder's encode
    worker, aiortc's decoder threads (video and audio in pairs), libx264's threads last."""
    threads: dict[int, tuple[float, int]] = {}
    with contextlib.suppress(FileNotFoundError):
        born = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            threads[int(task.name)] = ((int(fields[19]) - born) / CLOCK_TICKS, int(fields[11]) + int(fields[12]))
    return threads


@dataclass
class Recording:
    label: str
    wall: float  # seconds of the measured window
    cpu: float  # recorder CPU seconds in the window
    here_cpu: float  # this process's CPU seconds in the window (SFU, bots, control, egress server)
    media: float  # seconds of media in the file
    recorded: float  # wall seconds from the recording's first media to the stop
    frames: int  # video frames in the file (0 for audio-only)
    status: str
    size: int
    threads: list[tuple[int, float, float]]  # (tid, started s, CPU seconds in the window), busiest first

    @property
    def cores(self) -> float:
        return self.cpu / self.wall

    @property
    def speed(self) -> float:
        return self.media / self.recorded if self.recorded else 0.0

    @property
    def lag(self) -> float:
        return self.recorded - self.media

    @property
    def expected_frames(self) -> int:
        return round(self.media * FPS)

    @property
    def dropped(self) -> int:
        return max(0, self.expected_frames - self.frames) if self.frames else 0

    @property
    def dropped_share(self) -> float:
        return self.dropped / self.expected_frames if self.expected_frames else 0.0

    @property
    def kept_up(self) -> bool:
        return self.status == "COMPLETE" and self.dropped_share <= DROP_LIMIT and self.lag <= LAG_LIMIT


async def _until(stub: EgressServiceAsyncStub, stack: Stack, name: str, status: int, within: float) -> res.Egress:
    async def follow() -> res.Egress:
        last = res.Egress()
        async for egress in stub.WatchEgress(pb.WatchEgressRequest(name=name), metadata=stack.metadata):
            last = egress
            if egress.status == status:
                break
        return last

    return await asyncio.wait_for(follow(), within)


def _video_frames(path: Path) -> int:
    """Video frames in a file, counted from its packets (nothing decoded)."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            return 0
        return sum(1 for packet in container.demux(container.streams.video[0]) if packet.size)


async def _record(
    stub: EgressServiceAsyncStub, stack: Stack, room: str, label: str, options: res.RoomComposite, seconds: float
) -> Recording:
    started = await stub.StartRoomCompositeEgress(
        pb.StartRoomCompositeEgressRequest(room=room, options=options), metadata=stack.metadata
    )
    try:
        active = await _until(stub, stack, started.name, res.EGRESS_STATUS_ACTIVE, within=90)
        if active.status != res.EGRESS_STATUS_ACTIVE:
            raise RuntimeError(f"{label}: {res.EgressStatus.Name(active.status)} {active.error.message}")
        actor = ray.get_actor(f"egress-{started.name.split('/')[1]}")
        pid = int(await actor.pid.remote())
        await asyncio.sleep(WARM_UP)
        threads_before, cpu_before = _thread_ticks(pid), process_cpu_seconds(pid)
        here_before, clock = time.process_time(), time.monotonic()
        await asyncio.sleep(seconds)
        threads_after, cpu_after = _thread_ticks(pid), process_cpu_seconds(pid)
        here_after, wall = time.process_time(), time.monotonic() - clock
    finally:
        stopped = time.time()
        await stub.StopEgress(pb.StopEgressRequest(name=started.name), metadata=stack.metadata)
    final = await _until(stub, stack, started.name, -1, within=120)  # -1: follow it to its end
    threads = [
        (tid, born, (ticks - threads_before.get(tid, (born, 0))[1]) / CLOCK_TICKS)
        for tid, (born, ticks) in threads_after.items()
    ]
    threads.sort(key=lambda thread: -thread[2])
    path = stack.recordings / final.file.key
    media_start = final.file.media_start_time.ToNanoseconds() / 1e9
    return Recording(
        label=label,
        wall=wall,
        cpu=cpu_after - cpu_before,
        here_cpu=here_after - here_before,
        media=final.file.duration.ToTimedelta().total_seconds(),
        recorded=stopped - media_start if media_start else 0.0,
        frames=0 if options.audio_only else await asyncio.to_thread(_video_frames, path),
        status=res.EgressStatus.Name(final.status).removeprefix("EGRESS_STATUS_"),
        size=final.file.size_bytes,
        threads=threads,
    )


# --- the baseline: ffmpeg -----------------------------------------------------------------------


@dataclass
class Baseline:
    command: list[str]
    cpu: float
    wall: float
    media: float
    frames: int

    @property
    def per_second(self) -> float:
        return self.cpu / self.media


def _write_inputs(folder: Path) -> tuple[Path, Path]:
    """The bots' VP8 packets in IVF and their Opus packets in Ogg, as they were encoded."""
    video = folder / "camera.ivf"
    packets = video_packets()
    with video.open("wb") as out:
        out.write(b"DKIF" + struct.pack("<HH4sHHIIII", 0, 32, b"VP80", 640, 480, FPS, 1, len(packets), 0))
        for index, frame in enumerate(packets):
            out.write(struct.pack("<IQ", len(frame), index) + frame)
    audio = folder / "microphone.ogg"
    with av.open(str(audio), "w", format="ogg") as container:
        # The Ogg muxer takes its OpusHead from a codec context's extradata: open an encoder's
        # context (never used) and give it the head of a stream without pre-skip.
        stream = container.add_stream("libopus", rate=48000)
        stream.codec_context.layout = "stereo"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 48000)
        stream.codec_context.open()
        stream.codec_context.extradata = b"OpusHead" + struct.pack("<BBHIhB", 1, 2, 0, 48000, 0, 0)
        for index, payload in enumerate(audio_packets()):
            packet = av.Packet(payload)
            packet.stream = stream
            packet.time_base = Fraction(1, 48000)
            packet.pts = packet.dts = index * 960
            packet.duration = 960
            container.mux(packet)
    return video, audio


def _ffmpeg_command(video: Path, audio: Path, inputs: int, seconds: float, output: Path) -> list[str]:
    columns = 2 if inputs > 1 else 1
    rows = -(-inputs // columns)
    tile_w, tile_h = 1280 // columns, 720 // rows
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    for path in [video] * inputs + [audio] * inputs:
        command += ["-stream_loop", "-1", "-i", str(path)]
    scaled = ";".join(f"[{i}:v]scale={tile_w}:{tile_h}[v{i}]" for i in range(inputs))
    places = "|".join(f"{(i % columns) * tile_w}_{(i // columns) * tile_h}" for i in range(inputs))
    tiles = "".join(f"[v{i}]" for i in range(inputs))
    voices = "".join(f"[{inputs + i}:a]" for i in range(inputs))
    graph = f"{scaled};{tiles}xstack=inputs={inputs}:layout={places}:fill=black[v];{voices}amix=inputs={inputs}[a]"
    if inputs == 1:
        graph = f"[0:v]scale={tile_w}:{tile_h}[v];[1:a]anull[a]"
    command += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-t", f"{seconds:g}", "-r", str(FPS)]
    command += ["-c:v", "libx264", "-preset", X264_PRESET, "-b:v", "3M", "-g", str(2 * FPS), "-bf", "0"]
    command += ["-c:a", "aac", "-b:a", "128k", "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(output)]
    return command


def _baseline(folder: Path, inputs: int, seconds: float) -> Baseline:
    video, audio = _write_inputs(folder)
    output = folder / "ffmpeg.mp4"
    command = _ffmpeg_command(video, audio, inputs, seconds, output)
    before, clock = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    subprocess.run(command, check=True)
    wall = time.monotonic() - clock
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with av.open(str(output)) as container:
        media = float(container.duration or 0) / av.time_base
    return Baseline(command=command, cpu=cpu, wall=wall, media=media, frames=_video_frames(output))


# --- concurrency --------------------------------------------------------------------------------


async def _admitted(stub: EgressServiceAsyncStub, stack: Stack, limit: int) -> int:
    """How many 720p30 composites the egress starts at once before refusing one (empty rooms,
    stopped at once)."""
    names: list[str] = []
    try:
        while len(names) < limit:
            room = await stack.admin.rooms.create(display_name=f"Probe {len(names)}")
            try:
                started = await stub.StartRoomCompositeEgress(
                    pb.StartRoomCompositeEgressRequest(room=room.name, options=res.RoomComposite()),
                    metadata=stack.metadata,
                )
            except grpc.aio.AioRpcError as error:
                if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    break
                raise
            names.append(started.name)
    finally:
        for name in names:
            await stub.StopEgress(pb.StopEgressRequest(name=name), metadata=stack.metadata)
        for name in names:
            with contextlib.suppress(Exception):
                await _until(stub, stack, name, -1, within=60)
    return len(names)


async def _ray_idle(cpus: int, within: float = 15.0) -> None:
    """Waits until the recorders that ended gave their CPUs back to Ray."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0.0) >= cpus:  # type: ignore[no-untyped-call]
            return
        await asyncio.sleep(0.5)


async def _concurrent(
    stub: EgressServiceAsyncStub, stack: Stack, count: int, publishers: int, seconds: float
) -> list[Recording]:
    bots: list[Room] = []
    try:
        rooms = []
        for index in range(count):
            room = await stack.admin.rooms.create(display_name=f"Concurrent {count}.{index}")
            bots += await _publishers(stack, room.name, publishers)
            rooms.append(room.name)
        options = res.RoomComposite(layout=res.COMPOSITE_LAYOUT_GRID)
        return list(
            await asyncio.gather(
                *(_record(stub, stack, room, f"{count}x #{i + 1}", options, seconds) for i, room in enumerate(rooms))
            )
        )
    finally:
        await _close(bots)


# --- report -------------------------------------------------------------------------------------


def _thread_table(recording: Recording, top: int = 12) -> None:
    print(f"\n### Recorder threads ({recording.label}): CPU in the window, busiest first\n")
    print("| tid | started (s after the process) | cores | share |")
    print("|---|---|---|---|")
    for tid, born, seconds in recording.threads[:top]:
        if seconds <= 0:
            break
        share = 100 * seconds / max(recording.cpu, 1e-9)
        print(f"| {tid} | {born:.2f} | {seconds / recording.wall:.3f} | {share:.0f} % |")
    rest = sum(seconds for _, _, seconds in recording.threads[top:])
    idle = sum(1 for _, _, seconds in recording.threads if seconds <= 0)
    print(f"\n{len(recording.threads)} threads; the rest {rest / recording.wall:.3f} cores; {idle} idle")


def _recording_row(r: Recording) -> str:
    frames = f"{r.frames} / {r.expected_frames} ({100 * r.dropped_share:.1f} % dropped)" if r.frames else "–"
    return (
        f"| {r.label} | {r.status} | {r.cores:.2f} | {r.cpu / (r.wall * r.speed):.2f} | {r.speed:.3f}x "
        f"| {r.lag:.2f} | {frames} | {r.size / 1e6:.1f} | {r.here_cpu / r.wall:.2f} |"
    )


RECORDING_HEADER = (
    "| recording | status | recorder cores | CPU-s per recorded s | speed vs real time | lag s | video frames "
    "| MB | bench process cores |\n|---|---|---|---|---|---|---|---|---|"
)


async def _run(args: argparse.Namespace, folder: Path, ray_folder: str) -> None:
    cpus = os.cpu_count() or 1
    print(f"baseline: ffmpeg, {args.publishers} inputs, {args.seconds:g} s of 720p30 ...", flush=True)
    baseline = await asyncio.to_thread(_baseline, folder, args.publishers, args.seconds)
    start_ray(num_cpus=cpus, temp_dir=ray_folder)
    async with _stack(folder) as stack:
        room = await stack.admin.rooms.create(display_name="Bench")
        bots = await _publishers(stack, room.name, args.publishers)
        try:
            async with _egress(stack.settings) as stub:
                print(f"recording {args.publishers} publishers: 720p30 GRID for {args.seconds:g} s ...", flush=True)
                grid = res.RoomComposite(layout=res.COMPOSITE_LAYOUT_GRID)
                video = await _record(stub, stack, room.name, "720p30 GRID", grid, args.seconds)
                print(f"recording {args.publishers} publishers: audio only for {args.seconds:g} s ...", flush=True)
                audio_only = res.RoomComposite(audio_only=True)
                audio = await _record(stub, stack, room.name, "audio only", audio_only, args.seconds)
                admitted = 0
                if args.concurrency_max:
                    await _ray_idle(cpus)
                    admitted = await _admitted(stub, stack, args.concurrency_max + 1)
        finally:
            await _close(bots)
        steps: list[list[Recording]] = []
        if args.concurrency_max:
            low = dataclasses.replace(stack.settings, cpu_scale=LOW_CPU_SCALE, node=f"{stack.settings.node}-low")
            async with _egress(low) as stub:
                for count in range(1, args.concurrency_max + 1):
                    print(f"concurrency: {count} composites for {args.step_seconds:g} s ...", flush=True)
                    steps.append(await _concurrent(stub, stack, count, args.publishers, args.step_seconds))
                    if not all(r.kept_up for r in steps[-1]):
                        break

    print(f"\n## Egress: {args.publishers} publishers (640×480 30 fps VP8 + Opus), {cpus} CPUs, ")
    print(f"## window {args.seconds:g} s (after {WARM_UP:g} s of warm-up); load average {os.getloadavg()[0]:.2f}\n")
    print(RECORDING_HEADER)
    print(_recording_row(video))
    print(_recording_row(audio))
    _thread_table(video)
    _thread_table(audio, top=6)
    print("\n### Baseline: ffmpeg (same composite from files, as fast as it goes)\n")
    print("| | CPU-s | wall s | media s | CPU-s per recorded s | speed vs real time | video frames |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| ffmpeg 5.1 xstack + amix, libx264 {X264_PRESET} | {baseline.cpu:.1f} | {baseline.wall:.1f} "
        f"| {baseline.media:.1f} "
        f"| {baseline.per_second:.2f} | {baseline.media / baseline.wall:.2f}x | {baseline.frames} |"
    )
    print("\n    " + " ".join(f"'{part}'" if "[" in part or ";" in part else part for part in baseline.command))
    parley_per_second = video.cpu / (video.wall * video.speed)
    ratio = parley_per_second / baseline.per_second
    print("\n### CPU per recorded second of a 720p30 composite\n")
    print("| | CPU-s per recorded s | vs ffmpeg |")
    print("|---|---|---|")
    print(f"| ffmpeg — baseline | {baseline.per_second:.2f} | 1.00x |")
    caveat = "" if video.kept_up else f" (did not keep up: {100 * video.dropped_share:.0f} % of frames dropped)"
    print(f"| Parley recorder ({video.speed:.2f}x real time){caveat} | {parley_per_second:.2f} | {ratio:.2f}x |")
    print(f"| LiveKit's budget (documented cost) | {LIVEKIT_ROOM_COMPOSITE_CPUS:.2f} | – |")
    print(f"| Parley audio only | {audio.cpu / (audio.wall * audio.speed):.3f} | – |")
    if args.concurrency_max:
        print(f"\n### Concurrency: rooms of {args.publishers} publishers, {args.step_seconds:g} s each\n")
        print(f"At its default cost model the egress admits {admitted} 720p30 composites at once on {cpus} Ray CPUs")
        print(
            f"(probed up to {args.concurrency_max + 1}); below, a second egress server with cpu_scale={LOW_CPU_SCALE}"
        )
        print("admits them all.\n")
        print(RECORDING_HEADER)
        for step in steps:
            for recording in step:
                print(_recording_row(recording))
        kept = max((len(step) for step in steps if all(r.kept_up for r in step)), default=0)
        print(
            f"\nmost concurrent composites that kept up (≤{100 * DROP_LIMIT:g} % frames dropped, ≤{LAG_LIMIT:g} s "
            f"behind): {kept}{' (the most tried)' if kept == args.concurrency_max else ''}"
        )
    print(
        f"\nsummary: a 720p30 composite of {args.publishers} costs the recorder {video.cores:.2f} cores at "
        f"{video.speed:.2f}x real time ({100 * video.dropped_share:.1f} % frames dropped), ffmpeg "
        f"{baseline.per_second:.2f} CPU-s per recorded s: Parley/ffmpeg {ratio:.2f}x{caveat}; "
        f"audio only {audio.cores:.3f} cores; "
        f"LiveKit budgets {LIVEKIT_ROOM_COMPOSITE_CPUS:g} CPUs"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--concurrency-max", type=int, default=0)
    parser.add_argument("--step-seconds", type=float, default=20.0)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        parser.error("ffmpeg is not installed (apt-get install ffmpeg; scripts/setup --test installs it)")
    folder = Path(tempfile.mkdtemp(prefix="parley-egress-bench-", dir="/tmp"))
    ray_folder = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths live there
    try:
        asyncio.run(_run(args, folder, ray_folder))
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(ray_folder, ignore_errors=True)


if __name__ == "__main__":
    main()
