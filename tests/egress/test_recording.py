"""The egress service end to end, with real parts: control, an SFU node, the egress service
with its recorders on a local Ray cluster, and SDK bots publishing known content (a solid
colour and a tone of its own per bot). The recordings are decoded back with PyAV."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import grpc
import numpy as np
import pytest
import ray
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame

from control import ALL_SCOPES, ControlServer, ControlSettings
from egress import EgressServer, EgressSettings
from parley import Client
from parley.control.v1 import room_service_pb2 as room_pb
from parley.egress.v1 import egress_service_pb2 as pb
from parley.egress.v1 import egress_service_pb2_grpc as pb_grpc
from parley.egress.v1 import resources_pb2 as res
from parley.room import Room
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from ..sfu.conftest import ToneTrack

RED, BLUE = (220, 30, 30), (30, 40, 220)


class SolidTrack(VideoStreamTrack):
    """Video of one solid colour, 320×240 (small: the bots' own VP8 encoders share the cores
    with the recorder)."""

    def __init__(self, colour: tuple[int, int, int]) -> None:
        super().__init__()
        self.rgb = np.empty((240, 320, 3), dtype=np.uint8)
        self.rgb[:, :] = colour

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.rgb, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


@dataclass
class Stack:
    control: ControlServer
    sfu: SfuServer
    egress: EgressServer
    admin: Client
    stub: pb_grpc.EgressServiceStub
    metadata: tuple[tuple[str, str], ...]
    recordings: Path


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("egress-stack")
    async with SfuServer(
        SfuSettings(token_secrets={"parley": TOKEN_SECRET}, grpc_address="127.0.0.1:0", empty_timeout=2.0)
    ) as sfu:
        control_settings = ControlSettings(
            database_url=f"sqlite:///{folder / 'control.db'}",
            token_secret=TOKEN_SECRET,
            dev_login=True,
            sfu_url=f"grpc://{sfu.target}",
        )
        async with ControlServer(control_settings) as control:
            row, secret = await control.control.create_api_key(None, "egress node", ["egress:report", "tokens:create"])
            settings = EgressSettings(
                control_target=control.target,
                api_key=f"{row.id}.{secret}",
                recordings_dir=folder / "recordings",
                spool_dir=folder / "spool",
                ray_address=ray_address,
                report_interval=1.0,
                empty_room_timeout=5.0,
            )
            async with EgressServer(settings, metrics_address="127.0.0.1:0") as egress:
                key, key_secret = await control.control.create_api_key(None, "test admin", ALL_SCOPES)
                admin = Client(control.target, bearer=f"{key.id}.{key_secret}")
                egress_channel = grpc.aio.insecure_channel(egress.target)
                stub = pb_grpc.EgressServiceStub(egress_channel)
                yield Stack(
                    control,
                    sfu,
                    egress,
                    admin,
                    stub,
                    (("authorization", f"Bearer {key.id}.{key_secret}"),),
                    settings.recordings_dir,
                )
                await egress_channel.close()
                await admin.aclose()


async def _bot(stack: Stack, room: str, identity: str, colour: tuple[int, int, int] | None, tone: float) -> Room:
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    grant = await stack.admin.rooms.create_join_token(
        room, identity=identity, display_name=identity.title(), grants=grants
    )
    bot = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
    if colour is not None:
        await bot.publish(SolidTrack(colour), source="camera")
    await bot.publish(ToneTrack(tone, amplitude=0.3), source="microphone")
    return bot


async def _final(stack: Stack, name: str, within: float = 60.0) -> res.Egress:
    async def follow() -> res.Egress:
        last = res.Egress()
        async for egress in stack.stub.WatchEgress(pb.WatchEgressRequest(name=name), metadata=stack.metadata):
            last = egress
        return last

    return await asyncio.wait_for(follow(), within)


async def _until(stack: Stack, name: str, status: int, within: float = 60.0) -> res.Egress:
    async def follow() -> res.Egress:
        async for egress in stack.stub.WatchEgress(pb.WatchEgressRequest(name=name), metadata=stack.metadata):
            if egress.status == status:
                return egress
        raise AssertionError(f"{name} ended without reaching {res.EgressStatus.Name(status)}")

    return await asyncio.wait_for(follow(), within)


def _strongest(samples: np.ndarray, rate: int, around: float) -> float:
    """Energy near ``around`` Hz relative to the spectrum's median (how clearly the tone is there)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = spectrum[(freqs > around - 10) & (freqs < around + 10)]
    return float(band.max() / (np.median(spectrum) + 1e-9))


def _decode_audio(path: Path) -> tuple[np.ndarray, int]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        chunks = [f.to_ndarray().astype(np.float64) for f in container.decode(stream)]
        rate = stream.rate
    mono = np.concatenate([c.reshape(c.shape[0], -1).mean(axis=0) if c.ndim > 1 else c for c in chunks])
    return mono, rate


async def test_a_room_composite_shows_and_sounds_like_the_meeting(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Composite")
    alice = await _bot(stack, room.name, "alice", RED, 440.0)
    bob = await _bot(stack, room.name, "bob", BLUE, 1000.0)
    try:
        started = await stack.stub.StartRoomCompositeEgress(
            pb.StartRoomCompositeEgressRequest(
                room=room.name, options=res.RoomComposite(layout=res.COMPOSITE_LAYOUT_GRID)
            ),
            metadata=stack.metadata,
        )
        assert started.status == res.EGRESS_STATUS_STARTING
        active = await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(8)
        await stack.stub.StopEgress(pb.StopEgressRequest(name=started.name), metadata=stack.metadata)
        stopped = time.time()
        final = await _final(stack, started.name)
    finally:
        await alice.close()
        await bob.close()
    assert final.status == res.EGRESS_STATUS_COMPLETE, final
    assert active.file.key.endswith(".mp4")
    path = stack.recordings / final.file.key
    assert final.file.size_bytes == path.stat().st_size > 0
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        frames = list(container.decode(video=0))
    # A frame's pts is its tick on the 1/30 s timeline (a tick the recorder could not keep up
    # with is skipped, not squeezed out of the timeline).
    duration = float((frames[-1].pts - frames[0].pts) * frames[0].time_base) + 1 / 30
    # From the first media to the stop, less the recorder's delay behind real time (0.3 s).
    recorded = stopped - final.file.media_start_time.ToNanoseconds() / 1e9 - 0.3
    assert abs(duration - recorded) < 0.5, (duration, recorded)
    assert abs(final.file.duration.ToTimedelta().total_seconds() - duration) < 0.2
    # GRID of two: alice (joined first) on the left, bob on the right.
    rgb = frames[-15].to_ndarray(format="rgb24")
    left, right = rgb[300:420, 200:440].reshape(-1, 3).mean(axis=0), rgb[300:420, 840:1080].reshape(-1, 3).mean(axis=0)
    assert left[0] > 150 and left[2] < 100, left
    assert right[2] > 150 and right[0] < 100, right
    samples, rate = _decode_audio(path)
    assert _strongest(samples, rate, 440.0) > 50
    assert _strongest(samples, rate, 1000.0) > 50


async def test_an_audio_only_recording_is_ogg_opus_with_every_voice(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Audio")
    alice = await _bot(stack, room.name, "alice", None, 440.0)
    bob = await _bot(stack, room.name, "bob", None, 1000.0)
    try:
        started = await stack.stub.StartRoomCompositeEgress(
            pb.StartRoomCompositeEgressRequest(room=room.name, options=res.RoomComposite(audio_only=True)),
            metadata=stack.metadata,
        )
        await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(5)
        await stack.stub.StopEgress(pb.StopEgressRequest(name=started.name), metadata=stack.metadata)
        final = await _final(stack, started.name)
    finally:
        await alice.close()
        await bob.close()
    assert final.status == res.EGRESS_STATUS_COMPLETE, final
    path = stack.recordings / final.file.key
    assert path.suffix == ".ogg"
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.name in ("opus", "libopus")
    samples, rate = _decode_audio(path)
    assert len(samples) / rate > 3.5
    assert _strongest(samples, rate, 440.0) > 50
    assert _strongest(samples, rate, 1000.0) > 50


async def test_a_killed_recorder_fails_the_egress_and_leaves_a_playable_file(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Crash")
    alice = await _bot(stack, room.name, "alice", RED, 440.0)
    try:
        started = await stack.stub.StartRoomCompositeEgress(
            pb.StartRoomCompositeEgressRequest(room=room.name, options=res.RoomComposite()),
            metadata=stack.metadata,
        )
        await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(5)
        actor = ray.get_actor(f"egress-{started.name.split('/')[1]}")
        pid = await actor.pid.remote()
        os.kill(pid, signal.SIGKILL)
        final = await _final(stack, started.name)
    finally:
        await alice.close()
    assert final.status == res.EGRESS_STATUS_FAILED
    assert "died" in final.error.message
    path = stack.recordings / final.file.key
    with av.open(str(path)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded > 30  # at least a second of the five recorded


async def test_a_start_beyond_the_cluster_capacity_is_refused_not_queued(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Full")
    request = pb.StartRoomCompositeEgressRequest(
        room=room.name, options=res.RoomComposite(preset=res.ENCODING_PRESET_H264_1080P_30)
    )
    costly = stack.egress.service
    scale = costly.settings.cpu_scale
    object.__setattr__(costly.settings, "cpu_scale", 10.0)  # 20 CPUs on a 2-CPU cluster
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stack.stub.StartRoomCompositeEgress(request, metadata=stack.metadata)
    finally:
        object.__setattr__(costly.settings, "cpu_scale", scale)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_only_keys_with_the_egress_scope_may_call(stack: Stack) -> None:
    key, secret = await stack.control.control.create_api_key(None, "rooms only", ["rooms:create"])
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await stack.stub.ListEgresses(
            pb.ListEgressesRequest(), metadata=(("authorization", f"Bearer {key.id}.{secret}"),)
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as anonymous:
        await stack.stub.ListEgresses(pb.ListEgressesRequest())
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
