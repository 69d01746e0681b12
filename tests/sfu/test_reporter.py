"""The SFU tells control what happens in meetings (``SfuReportService.ReportEvents``): bots
meet on a real SFU node reporting to a small stand-in for control (a gRPC server that applies
events as control does: in sequence, once each, validating them against the contract). The
real control's side is tested end to end elsewhere."""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
from prometheus_client import REGISTRY

from parley.control.v1 import resources_pb2 as control_res
from parley.control.v1 import sfu_report_service_pb2 as pb
from parley.control.v1 import sfu_report_service_pb2_grpc as pb_grpc
from parley.room import Room
from parley.server import ConfigurationError, field_violations
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from sfu import SfuServer, SfuSettings
from sfu._reporter import REPORTS, Reporter

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, ColourTrack, Mint, ToneTrack

API_KEY = "pk_test.sk_test"


class FakeControl(pb_grpc.SfuReportServiceServicer):
    """Applies each node's events in sequence, once each: a gap is FAILED_PRECONDITION naming
    the sequence expected, an event breaking the contract's rules INVALID_ARGUMENT."""

    def __init__(self) -> None:
        self.applied: dict[str, int] = {}
        self.events: list[pb.SfuEvent] = []
        self.requests: list[pb.ReportEventsRequest] = []
        self.authorizations: set[str] = set()
        self.unavailable = False
        self.refused = 0

    async def ReportEvents(
        self, request: pb.ReportEventsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReportEventsResponse:
        self.authorizations.add(str(dict(context.invocation_metadata() or ()).get("authorization", "")))
        if self.unavailable:
            self.refused += 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "control is away")
        if violations := field_violations(request):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(violations))
        self.requests.append(request)
        applied = self.applied.get(request.node, 0)
        if request.events[0].sequence > applied + 1:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"events of node {request.node} are missing: expected sequence {applied + 1}, "
                f"got {request.events[0].sequence}",
            )
        for event in request.events:
            if event.sequence == applied + 1:
                self.events.append(event)
                applied = event.sequence
        self.applied[request.node] = applied
        return pb.ReportEventsResponse(applied_sequence=applied)

    def kinds(self, room: str | None = None) -> list[str]:
        return [str(e.WhichOneof("event")) for e in self.events if room is None or e.room == room]


async def _serve(control: FakeControl, port: int = 0) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server()
    pb_grpc.add_SfuReportServiceServicer_to_server(control, server)
    port = server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server, port


@pytest.fixture
async def control() -> AsyncIterator[tuple[FakeControl, str]]:
    fake = FakeControl()
    server, port = await _serve(fake)
    yield fake, f"127.0.0.1:{port}"
    await server.stop(0)


def _settings(control_target: str, **overrides: Any) -> SfuSettings:
    defaults: dict[str, Any] = {"grpc_address": "127.0.0.1:0", "empty_timeout": 0.5, "report_api_key": API_KEY}
    return SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, control_target=control_target, **{**defaults, **overrides})


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.05)


def _room() -> str:
    return f"report-{uuid.uuid4().hex[:8]}"


async def _meet(sfu: SfuServer, token: Mint, room_id: str) -> None:
    """Alice joins, publishes a microphone (her media connects), then a camera she mutes and
    unpublishes, and leaves."""
    alice = await Room.connect(sfu.target, token("alice", room_id))
    try:
        await alice.publish(ToneTrack(), source="microphone")
        # Her media connects after the first offer is answered: wait for it (as seen by the SFU).
        await until(lambda: sfu.rooms.rooms[room_id].sessions["alice"].media_connected)
        camera = await alice.publish(ColourTrack(), source="camera")
        await alice.set_muted(camera.sid, True)
        await alice.unpublish(camera.sid)
    finally:
        await alice.close()


async def test_a_meeting_is_reported_in_order(control: tuple[FakeControl, str], token: Mint) -> None:
    fake, target = control
    room_id = _room()
    async with SfuServer(_settings(target)) as sfu:
        await _meet(sfu, token, room_id)
        await until(lambda: "room_finished" in fake.kinds(room_id))  # after the empty timeout
        assert fake.kinds(room_id) == [
            "room_started",
            "participant_joined",  # her publisher connection connected
            "track_published",  # the microphone, negotiated before media flowed: reported after the join
            "track_published",
            "track_muted",
            "track_unpublished",  # the camera
            "track_unpublished",  # the microphone, as she leaves
            "participant_left",
            "room_finished",
        ]
        node, url = sfu.cluster.node_id, sfu.cluster.url
    assert [e.sequence for e in fake.events] == list(range(1, len(fake.events) + 1))
    assert {(r.node, r.node_url) for r in fake.requests} == {(node, url)}
    assert fake.authorizations == {f"Bearer {API_KEY}"}
    events = fake.events
    assert len({e.meeting_sid for e in events}) == 1 and events[0].meeting_sid.startswith("RM_")
    joined = events[1].participant_joined
    assert (joined.identity, joined.display_name) == ("alice", "Alice")
    assert joined.participant_sid.startswith("PA_") and joined.signal_time.seconds > 0
    assert events[1].time.ToDatetime() >= joined.signal_time.ToDatetime()
    assert events[2].track_published.source == control_res.TRACK_SOURCE_MICROPHONE
    camera = events[3].track_published
    assert camera.source == control_res.TRACK_SOURCE_CAMERA
    assert (events[4].track_muted.track_sid, events[4].track_muted.muted) == (camera.track_sid, True)
    assert events[5].track_unpublished.track_sid == camera.track_sid
    assert events[7].participant_left.participant_sid == joined.participant_sid


async def test_a_participant_whose_media_never_connects_aborted(control: tuple[FakeControl, str], token: Mint) -> None:
    fake, target = control
    room_id = _room()
    async with SfuServer(_settings(target)) as sfu:
        async with grpc.aio.insecure_channel(sfu.target) as channel:
            call = sig_grpc.SignalServiceStub(channel).Connect()
            await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=token("signal-only", room_id))))
            first = await call.read()
            assert isinstance(first, sig.ConnectResponse) and first.WhichOneof("message") == "joined"
            await call.write(sig.ConnectRequest(leave=sig.LeaveRequest()))
            await call.done_writing()
            while await call.read() is not grpc.aio.EOF:
                pass
        await until(lambda: "room_finished" in fake.kinds(room_id))
    assert fake.kinds(room_id) == ["room_started", "participant_aborted", "room_finished"]
    aborted = fake.events[1].participant_aborted
    assert (aborted.identity, aborted.display_name) == ("signal-only", "Signal-Only")


async def test_rooms_open_at_shutdown_are_reported_finished(control: tuple[FakeControl, str], token: Mint) -> None:
    fake, target = control
    room_id = _room()
    async with SfuServer(_settings(target, empty_timeout=60.0)) as sfu:
        alice = await Room.connect(sfu.target, token("alice", room_id))
        await alice.publish(ToneTrack(), source="microphone")
        await until(lambda: sfu.rooms.rooms[room_id].sessions["alice"].media_connected)
    # The node stopped with alice in the meeting: her leaving and the meeting's end went out.
    assert fake.kinds(room_id)[-3:] == ["track_unpublished", "participant_left", "room_finished"]
    await alice.close()


async def test_nothing_is_lost_while_control_is_away(token: Mint) -> None:
    with socket.socket() as probe:  # a port nothing listens on yet: control is down
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    fake = FakeControl()
    room_id = _room()
    async with SfuServer(_settings(f"127.0.0.1:{port}")) as sfu:
        await _meet(sfu, token, room_id)
        await until(lambda: room_id not in sfu.rooms.rooms)  # the meeting ended, unreported
        assert sfu.reporter.pending == 9
        server, _ = await _serve(fake, port)  # control comes back
        try:
            await until(lambda: sfu.reporter.pending == 0)
        finally:
            await server.stop(0)
    assert fake.kinds(room_id)[0] == "room_started" and fake.kinds(room_id)[-1] == "room_finished"
    assert len(fake.events) == 9
    assert [e.sequence for e in fake.events] == list(range(1, 10))


async def test_control_refusing_for_a_while_delays_events_only(control: tuple[FakeControl, str]) -> None:
    fake, target = control
    fake.unavailable = True
    reporter = Reporter(capacity=100)
    reporter.start(target, API_KEY, node="node-1", node_url="grpc://127.0.0.1:1")
    try:
        for i in range(30):
            reporter.emit(f"room-{i}", "RM_1", room_started=pb.RoomStarted())
        await until(lambda: fake.refused >= 3)  # retried, backing off
        fake.unavailable = False
        await until(lambda: len(fake.events) == 30)
    finally:
        await reporter.aclose()
    assert [e.room for e in fake.events] == [f"room-{i}" for i in range(30)]


async def test_an_overflowing_buffer_drops_the_oldest_and_control_takes_the_rest(
    control: tuple[FakeControl, str],
) -> None:
    fake, target = control
    reporter = Reporter(capacity=5)
    reporter.start(target, API_KEY, node="node-1", node_url="grpc://127.0.0.1:1")
    try:
        for i in range(3):
            reporter.emit(f"a{i}", "RM_1", room_started=pb.RoomStarted())
        await until(lambda: len(fake.events) == 3)
        fake.unavailable = True
        dropped = REPORTS.dropped
        for i in range(12):  # 7 more than the buffer holds
            reporter.emit(f"b{i}", "RM_1", room_started=pb.RoomStarted())
        assert REPORTS.dropped - dropped == 7 and reporter.pending == 5
        assert REGISTRY.get_sample_value("parley_sfu_report_dropped_total") == REPORTS.dropped
        fake.unavailable = False
        await until(lambda: len(fake.events) == 8)
    finally:
        await reporter.aclose()
    # Control expected 4 and the node held 11..15: renumbered from 4, the stream goes on.
    assert [e.room for e in fake.events] == ["a0", "a1", "a2", "b7", "b8", "b9", "b10", "b11"]
    assert [e.sequence for e in fake.events] == list(range(1, 9))


async def test_an_event_control_refuses_is_dropped_alone(control: tuple[FakeControl, str]) -> None:
    fake, target = control
    reporter = Reporter()
    reporter.start(target, API_KEY, node="node-1", node_url="grpc://127.0.0.1:1")
    try:
        for room in ("ok-1", "not a room id", "ok-2"):
            reporter.emit(room, "RM_1", room_started=pb.RoomStarted())
        await until(lambda: reporter.pending == 0 and len(fake.events) == 2)
    finally:
        await reporter.aclose()
    assert [e.room for e in fake.events] == ["ok-1", "ok-2"]


def test_emit_never_waits() -> None:
    """No event loop here at all: emit only appends (the oldest dropped once full)."""
    assert not inspect.iscoroutinefunction(Reporter.emit)
    reporter = Reporter(capacity=100, enabled=True)
    for i in range(10_000):
        reporter.emit("room", "RM_1", track_muted=pb.TrackMuted(identity="a", track_sid=f"TR_{i}", muted=True))
    assert reporter.pending == 100
    off = Reporter()
    off.emit("room", "RM_1", room_started=pb.RoomStarted())
    assert off.pending == 0


def test_a_control_target_needs_a_report_key() -> None:
    with pytest.raises(ConfigurationError, match="PARLEY_SFU_REPORT_API_KEY"):
        SfuServer(SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, control_target="127.0.0.1:1"))
