"""The egress service end to end, with real parts: control, an SFU node, the egress service
with its recorders on a local Ray cluster, and SDK bots publishing known content (a solid
colour and a tone of its own per bot). The recordings are decoded back with PyAV."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import av
import httpx
import numpy as np
import pytest
import ray
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame

from parley import (
    FailedPrecondition,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    verify_file_token,
)
from parley import _loadmedia as loadmedia
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import room_service_pb2 as room_pb
from parley.egress.v1 import resources_pb2 as res
from parley.room import Room

from ..sfu.conftest import ToneTrack
from .stack import Stack, recording_state
from .stack import stack as egress_stack

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

RED, BLUE = (220, 30, 30), (30, 40, 220)
BUCKET = "parley-egress-tests"


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


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> AsyncIterator[Stack]:
    async with egress_stack(tmp_path_factory.mktemp("egress-stack"), ray_address) as running:
        yield running


@pytest.fixture(scope="module")
async def s3_stack(
    tmp_path_factory: pytest.TempPathFactory, ray_address: str, s3: S3Client, s3_endpoint: str
) -> AsyncIterator[Stack]:
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    folder = tmp_path_factory.mktemp("egress-s3")
    async with egress_stack(folder, ray_address, bucket=BUCKET, s3_endpoint=s3_endpoint) as running:
        yield running


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
        async for egress in stack.admin.egress.watch(name):
            last = egress
        return last

    return await asyncio.wait_for(follow(), within)


async def _until(stack: Stack, name: str, status: res.EgressStatus.ValueType, within: float = 60.0) -> res.Egress:
    async def follow() -> res.Egress:
        async for egress in stack.admin.egress.watch(name):
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
        started = await stack.admin.egress.start_room_composite(room.name, layout=res.COMPOSITE_LAYOUT_GRID)
        assert started.status == res.EGRESS_STATUS_STARTING
        active = await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(8)
        await stack.admin.egress.stop(started.name)
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
    first, last = frames[0], frames[-1]
    assert first.pts is not None and last.pts is not None and first.time_base is not None
    duration = float((last.pts - first.pts) * first.time_base) + 1 / 30
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
    # The node is observable: its jobs and what they recorded.
    assert stack.egress.metrics is not None
    async with httpx.AsyncClient() as http:
        scraped = (await http.get(stack.egress.metrics.url, timeout=5)).text
    assert 'parley_egress_jobs_total{kind="composite",status="COMPLETE"}' in scraped
    assert 'parley_egress_media_seconds_total{kind="composite"}' in scraped
    assert "parley_rpc_" in scraped


async def test_an_audio_only_recording_is_ogg_opus_with_every_voice(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Audio")
    alice = await _bot(stack, room.name, "alice", None, 440.0)
    bob = await _bot(stack, room.name, "bob", None, 1000.0)
    try:
        started = await stack.admin.egress.start_room_composite(room.name, audio_only=True)
        await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(5)
        await stack.admin.egress.stop(started.name)
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


async def test_a_killed_recorder_fails_the_recording_frees_the_room_and_leaves_a_playable_object(
    s3_stack: Stack, s3: S3Client
) -> None:
    stack = s3_stack
    room = await stack.admin.rooms.create(display_name="Crash")
    alice = await _bot(stack, room.name, "alice", RED, 440.0)
    try:
        recording = await stack.admin.recordings.start(room.name)
        active = await recording_state(stack, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        await asyncio.sleep(6)
        actor = ray.get_actor(f"egress-{active.egress.split('/')[1]}")
        os.kill(await actor.pid.remote(), signal.SIGKILL)
        failed = await recording_state(stack, recording.name, {rec_pb.RECORDING_STATE_FAILED})
        # The room is free at once: a new recording starts.
        again = await stack.admin.recordings.start(room.name)
        await recording_state(stack, again.name, {rec_pb.RECORDING_STATE_ACTIVE})
        await asyncio.sleep(2)
        await stack.admin.recordings.stop(again.name)
        saved = await recording_state(stack, again.name, {rec_pb.RECORDING_STATE_SAVED})
    finally:
        await alice.close()
    assert "died" in failed.error.message
    # What the dead recorder wrote was uploaded from its spool: the object plays.
    key = failed.file.location.removeprefix(f"s3://{BUCKET}/")
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    assert len(body) == failed.file.size_bytes > 0
    with av.open(io.BytesIO(body)) as container:
        decoded = sum(1 for _ in container.decode(video=0))
    assert decoded > 30  # at least a second of the six recorded
    assert saved.file.size_bytes > 0
    link = await stack.admin.recordings.download_link(saved.name)
    assert link.url.startswith(s3_stack.control.settings.s3_endpoint)


async def test_a_transcript_recording_goes_from_start_to_saved_through_control(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Lifecycle")
    alice = await _bot(stack, room.name, "alice", None, 440.0)
    try:
        recording = await stack.admin.recordings.start(room.name, mode="transcript")
        assert recording.state == rec_pb.RECORDING_STATE_INITIATED or recording.state == rec_pb.RECORDING_STATE_ACTIVE
        await recording_state(stack, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        with pytest.raises(FailedPrecondition):
            await stack.admin.recordings.start(room.name)
        await asyncio.sleep(3)
        await stack.admin.recordings.stop(recording.name)
        saved = await recording_state(stack, recording.name, {rec_pb.RECORDING_STATE_SAVED})
    finally:
        await alice.close()
    assert saved.file.content_type == "audio/ogg"
    link = await stack.admin.recordings.download_link(saved.name)
    assert link.url.startswith("/v1/files/")
    claims = verify_file_token("f" * 40, link.url.removeprefix("/v1/files/"))
    path = stack.recordings / claims.path
    assert path.stat().st_size == saved.file.size_bytes
    samples, rate = _decode_audio(path)
    assert _strongest(samples, rate, 440.0) > 50


async def test_a_track_egress_writes_the_publishers_own_vp8_frames(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Track")
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    grant = await stack.admin.rooms.create_join_token(room.name, identity="cam", grants=grants)
    publisher = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
    try:
        track = await publisher.publish(loadmedia.video_track(), source="camera")
        started = await stack.admin.egress.start_track(room.name, track.sid)
        await _until(stack, started.name, res.EGRESS_STATUS_ACTIVE)
        await asyncio.sleep(5)
        await stack.admin.egress.stop(started.name)
        final = await _final(stack, started.name)
    finally:
        await publisher.close()
    assert final.status == res.EGRESS_STATUS_COMPLETE, final
    assert final.file.content_type == "video/webm"
    sent = loadmedia.video_packets()
    with av.open(str(stack.recordings / final.file.key)) as container:
        assert container.streams.video[0].codec_context.name in ("vp8", "libvpx")
        written = [bytes(p) for p in container.demux(video=0) if p.size]
    assert len(written) > 90  # three seconds or more of 30 fps
    # No transcoding: the file holds the sender's frames, byte for byte, in order.
    first = sent.index(written[0])
    same = sum(1 for i, data in enumerate(written) if data == sent[(first + i) % len(sent)])
    assert same >= 0.95 * len(written), (same, len(written))


async def test_a_start_beyond_the_cluster_capacity_is_refused_not_queued(stack: Stack) -> None:
    room = await stack.admin.rooms.create(display_name="Full")
    costly = stack.egress.service
    scale = costly.settings.cpu_scale
    object.__setattr__(costly.settings, "cpu_scale", 10.0)  # 24 CPUs on an 8-CPU cluster
    try:
        with pytest.raises(ResourceExhausted):
            await stack.admin.egress.start_room_composite(room.name, preset=res.ENCODING_PRESET_H264_1080P_30)
        # Through control, the recording fails to start and the room stays free.
        with pytest.raises(ResourceExhausted):
            await stack.admin.recordings.start(room.name)
    finally:
        object.__setattr__(costly.settings, "cpu_scale", scale)
    [recording] = [r async for r in stack.admin.recordings.list(room.name)]
    assert recording.state == rec_pb.RECORDING_STATE_FAILED_TO_START


async def test_only_keys_with_the_egress_scope_may_call(stack: Stack) -> None:
    key, secret = await stack.control.control.create_api_key(None, "rooms only", ["rooms:create"])
    rooms_only = stack.admin.with_bearer(f"{key.id}.{secret}")
    with pytest.raises(PermissionDenied):
        [e async for e in rooms_only.egress.list()]
    with pytest.raises(Unauthenticated):
        [e async for e in stack.admin.with_bearer("").egress.list()]
