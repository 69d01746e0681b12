"""Meeting history: SFU nodes report events (``SfuReportService``, ``sfu:report`` keys), control
turns them into meetings and participants exactly once, and owners and administrators read
them (``MeetingService``); ended meetings past the retention are purged. Runs on PostgreSQL
and SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from control import ControlServer
from control._meetings import MeetingUseCases
from parley import Client, ParleyError
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc
from parley.server import db

from .conftest import Callers

ACTIVE, LEFT, ABORTED = (
    meeting_pb.PARTICIPANT_STATE_ACTIVE,
    meeting_pb.PARTICIPANT_STATE_LEFT,
    meeting_pb.PARTICIPANT_STATE_ABORTED,
)


def _at(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


class Node:
    """A scripted SFU node: builds events with consecutive sequence numbers and reports them."""

    def __init__(self, client: Client, *, node_url: str = "") -> None:
        self.client = client
        self.node = f"node-{uuid.uuid4().hex[:12]}"
        self.node_url = node_url or f"grpc://{self.node}.sfu.test:7880"
        self.sequence = 0
        self._stub = report_grpc.SfuReportServiceStub(client.channel)

    def event(self, room: str, sid: str, at: datetime, **kind: Any) -> report_pb.SfuEvent:
        self.sequence += 1
        event = report_pb.SfuEvent(sequence=self.sequence, room=room.removeprefix("rooms/"), meeting_sid=sid, **kind)
        event.time.FromDatetime(at)
        return event

    async def report(self, events: list[report_pb.SfuEvent], *, node: str = "") -> int:
        request = report_pb.ReportEventsRequest(node=node or self.node, node_url=self.node_url, events=events)
        try:
            response = await self._stub.ReportEvents(request, metadata=self.client._metadata)
        except grpc.aio.AioRpcError as error:
            raise ParleyError.from_rpc_error(error) from None
        return response.applied_sequence


def joined(identity: str, sid: str, name: str = "") -> dict[str, Any]:
    return {
        "participant_joined": report_pb.ParticipantJoined(identity=identity, participant_sid=sid, display_name=name)
    }


def left(identity: str, sid: str) -> dict[str, Any]:
    return {"participant_left": report_pb.ParticipantLeft(identity=identity, participant_sid=sid)}


def aborted(identity: str, sid: str, name: str = "") -> dict[str, Any]:
    return {"participant_aborted": report_pb.ParticipantLeft(identity=identity, participant_sid=sid, display_name=name)}


STARTED = {"room_started": report_pb.RoomStarted()}
FINISHED = {"room_finished": report_pb.RoomFinished()}


async def _people(callers: Callers) -> dict[str, tuple[Client, str]]:
    people = {role: await callers.user(display_name=role.title()) for role in ("owner", "admin", "member", "stranger")}
    return people


async def _room(people: dict[str, tuple[Client, str]]) -> res.Room:
    owner = people["owner"][0]
    room = await owner.rooms.create(display_name="history")
    await owner.accesses.create(room.name, user=people["admin"][1], role=res.ROLE_ADMINISTRATOR)
    await owner.accesses.create(room.name, user=people["member"][1], role=res.ROLE_MEMBER)
    return room


async def _code(call: Any) -> grpc.StatusCode:
    try:
        if hasattr(call, "__aiter__"):
            [_ async for _ in call]
        else:
            await call
    except ParleyError as error:
        return error.code
    return grpc.StatusCode.OK


async def test_a_scripted_meeting_is_recorded_exactly(callers: Callers) -> None:
    people = await _people(callers)
    room = await _room(people)
    owner_id = people["owner"][1].removeprefix("users/")
    node = Node(await callers.key("sfu:report"))
    t0 = _at(datetime.now(UTC) - timedelta(hours=1))

    def s(seconds: int) -> datetime:
        return t0 + timedelta(seconds=seconds)

    r = room.name
    first = [
        node.event(r, "RM_1", s(0), **STARTED),
        node.event(r, "RM_1", s(10), **joined(owner_id, "PA_1", "Olivia")),
        node.event(r, "RM_1", s(20), **joined("guest-a", "PA_2", "Ann")),
        node.event(r, "RM_1", s(25), **aborted("guest-b", "PA_3", "Bob")),
    ]
    second = [
        node.event(r, "RM_1", s(30), **joined("guest-c", "PA_4", "Cid")),
        node.event(
            r,
            "RM_1",
            s(31),
            track_published=report_pb.TrackPublished(
                identity="guest-c", track_sid="TR_1", source=res.TRACK_SOURCE_CAMERA
            ),
        ),
        node.event(
            r, "RM_1", s(32), track_muted=report_pb.TrackMuted(identity="guest-c", track_sid="TR_1", muted=True)
        ),
        node.event(r, "RM_1", s(60), **left("guest-a", "PA_2")),
        node.event(r, "RM_1", s(70), **joined("guest-a", "PA_5", "Ann again")),
        node.event(
            r, "RM_1", s(80), track_unpublished=report_pb.TrackUnpublished(identity="guest-c", track_sid="TR_1")
        ),
        node.event(r, "RM_1", s(100), **left(owner_id, "PA_1")),
        node.event(r, "RM_1", s(120), **FINISHED),
    ]
    assert await node.report(first) == 4
    assert await node.report(second) == 12
    # The answer was lost: the same batch again, and one overlapping the applied events.
    assert await node.report(second) == 12
    assert await node.report(first[2:] + second) == 12

    owner = people["owner"][0]
    [meeting] = [m async for m in owner.meetings.list(r)]
    assert meeting.start_time.ToDatetime(tzinfo=UTC) == s(0)
    assert meeting.end_time.ToDatetime(tzinfo=UTC) == s(120)
    assert (meeting.peak_participants, meeting.participant_count, meeting.active) == (3, 3, False)
    assert meeting.name.startswith(f"{r}/meetings/")
    assert await owner.meetings.get(meeting.name) == meeting
    meeting_id = meeting.name.rsplit("/", 1)[1]
    assert await owner.meetings.get(meeting_id, room=room.slug) == meeting

    participants = [p async for p in owner.meetings.list_participants(meeting.name)]
    got = [
        (
            p.identity,
            p.user,
            p.display_name,
            p.join_time.ToDatetime(tzinfo=UTC),
            p.leave_time.ToDatetime(tzinfo=UTC),
            p.duration.ToTimedelta(),
            p.state,
        )
        for p in participants
    ]
    assert got == [
        (owner_id, people["owner"][1], "Olivia", s(10), s(100), timedelta(seconds=90), LEFT),
        ("guest-a", "", "Ann", s(20), s(60), timedelta(seconds=40), LEFT),
        ("guest-b", "", "Bob", s(25), s(25), timedelta(0), ABORTED),
        ("guest-c", "", "Cid", s(30), s(120), timedelta(seconds=90), LEFT),
        ("guest-a", "", "Ann again", s(70), s(120), timedelta(seconds=50), LEFT),
    ]
    assert all(p.name.startswith(f"{meeting.name}/participants/") for p in participants)

    # A gap is refused, naming the sequence to resend from; nothing is applied.
    gap = Node(node.client)
    gap.node, gap.node_url, gap.sequence = node.node, node.node_url, 13
    with pytest.raises(ParleyError) as refused:
        await gap.report([gap.event(r, "RM_2", s(200), **STARTED)])
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert refused.value.reason == "SEQUENCE_GAP"
    assert "expected sequence 13" in refused.value.message
    assert [m.name async for m in owner.meetings.list(r)] == [meeting.name]

    # Sequence numbers inside a batch must be consecutive.
    with pytest.raises(ParleyError) as bad:
        await node.report([node.event(r, "RM_2", s(200), **STARTED), gap.event(r, "RM_2", s(201), **STARTED)])
    assert bad.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_an_ongoing_meeting_and_a_restarted_node(callers: Callers) -> None:
    people = await _people(callers)
    room = await _room(people)
    owner = people["owner"][0]
    key = await callers.key("sfu:report")
    node = Node(key)
    now = _at(datetime.now(UTC))
    r = room.name
    await node.report(
        [
            node.event(r, "RM_a", now - timedelta(minutes=5), **STARTED),
            node.event(r, "RM_a", now - timedelta(minutes=4), **joined("guest-x", "PA_x", "X")),
            # A room that does not exist (deleted meanwhile): skipped, not refused.
            node.event("nosuchroom", "RM_b", now - timedelta(minutes=4), **STARTED),
            node.event("f" * 32, "RM_c", now - timedelta(minutes=4), **joined("guest-y", "PA_y")),
        ]
    )
    [meeting] = [m async for m in owner.meetings.list(r)]
    assert meeting.active and not meeting.HasField("end_time")
    assert (meeting.peak_participants, meeting.participant_count) == (1, 1)
    [x] = [p async for p in owner.meetings.list_participants(meeting.name)]
    assert x.state == ACTIVE and not x.HasField("leave_time")
    assert x.duration.ToTimedelta() >= timedelta(minutes=4)

    # The node starts again at the same URL under a new id: what it left open has ended.
    restarted = Node(key, node_url=node.node_url)
    assert await restarted.report([restarted.event(r, "RM_d", now, **STARTED)]) == 1
    meetings = [m async for m in owner.meetings.list(r)]
    assert [m.active for m in meetings] == [True, False]
    ended = meetings[1]
    assert ended.name == meeting.name and ended.end_time.ToDatetime(tzinfo=UTC) >= now
    [x] = [p async for p in owner.meetings.list_participants(ended.name)]
    assert x.state == LEFT and x.leave_time == ended.end_time

    # Events of a meeting control never heard start of (reported from its first event).
    late = Node(key)
    await late.report([late.event(r, "RM_e", now - timedelta(seconds=30), **joined("guest-z", "PA_z"))])
    newest = [m async for m in owner.meetings.list(r, start_time_before=now)][0]
    assert newest.start_time.ToDatetime(tzinfo=UTC) == now - timedelta(seconds=30)
    assert (newest.participant_count, newest.active) == (1, True)


async def test_who_may_report_and_who_may_read(callers: Callers) -> None:
    people = await _people(callers)
    room = await _room(people)
    reporter = Node(await callers.key("sfu:report"))
    await reporter.report([reporter.event(room.name, "RM_p", _at(datetime.now(UTC)), **STARTED)])
    for client, code in (
        (people["owner"][0], grpc.StatusCode.PERMISSION_DENIED),
        (await callers.key("rooms:read", "rooms:update", "keys:manage"), grpc.StatusCode.PERMISSION_DENIED),
        (callers.anonymous, grpc.StatusCode.UNAUTHENTICATED),
    ):
        node = Node(client)
        with pytest.raises(ParleyError) as refused:
            await node.report([node.event(room.name, "RM_q", datetime.now(UTC), **STARTED)])
        assert refused.value.code == code

    [meeting] = [m async for m in people["owner"][0].meetings.list(room.name)]
    reader = await callers.key("rooms:read")
    for client, code in (
        (people["owner"][0], grpc.StatusCode.OK),
        (people["admin"][0], grpc.StatusCode.OK),
        (reader, grpc.StatusCode.OK),
        (people["member"][0], grpc.StatusCode.PERMISSION_DENIED),
        (people["stranger"][0], grpc.StatusCode.PERMISSION_DENIED),
        (await callers.key("sfu:report"), grpc.StatusCode.PERMISSION_DENIED),
        (callers.anonymous, grpc.StatusCode.UNAUTHENTICATED),
    ):
        assert await _code(client.meetings.list(room.name)) == code
        assert await _code(client.meetings.get(meeting.name)) == code
        assert await _code(client.meetings.list_participants(meeting.name)) == code

    # A meeting is found only under its own room.
    other = await people["owner"][0].rooms.create(display_name="other")
    meeting_id = meeting.name.rsplit("/", 1)[1]
    assert await _code(people["owner"][0].meetings.get(meeting_id, room=other.name)) == grpc.StatusCode.NOT_FOUND
    assert await _code(people["owner"][0].meetings.get(meeting_id, room="no-such-room")) == grpc.StatusCode.NOT_FOUND


async def test_pages_and_time_filters(callers: Callers) -> None:
    people = await _people(callers)
    room = await _room(people)
    owner = people["owner"][0]
    node = Node(await callers.key("sfu:report"))
    t0 = _at(datetime.now(UTC) - timedelta(days=2))
    r = room.name
    events = []
    for i in range(5):
        start = t0 + timedelta(hours=i)
        events.append(node.event(r, f"RM_{i}", start, **STARTED))
        events += [
            node.event(r, f"RM_{i}", start + timedelta(minutes=j), **joined(f"guest-{j}", f"PA_{i}_{j}"))
            for j in range(i + 1)
        ]
        events.append(node.event(r, f"RM_{i}", start + timedelta(minutes=30), **FINISHED))
    await node.report(events)

    starts = [m.start_time.ToDatetime(tzinfo=UTC) async for m in owner.meetings.list(r, page_size=2)]
    assert starts == [t0 + timedelta(hours=i) for i in (4, 3, 2, 1, 0)]
    first = await owner.meetings._call(
        owner.meetings._stub.ListMeetings, meeting_pb.ListMeetingsRequest(parent=r, page_size=2)
    )
    assert len(first.meetings) == 2 and first.next_page_token
    filtered = [
        m.start_time.ToDatetime(tzinfo=UTC)
        async for m in owner.meetings.list(
            r, start_time_after=t0 + timedelta(hours=1), start_time_before=t0 + timedelta(hours=3), page_size=1
        )
    ]
    assert filtered == [t0 + timedelta(hours=2), t0 + timedelta(hours=1)]
    # A page token is bound to its filter.
    with pytest.raises(ParleyError) as mismatch:
        await owner.meetings._call(
            owner.meetings._stub.ListMeetings,
            meeting_pb.ListMeetingsRequest(
                parent=r, page_size=2, page_token=first.next_page_token, start_time_after=first.meetings[0].start_time
            ),
        )
    assert mismatch.value.code == grpc.StatusCode.INVALID_ARGUMENT

    newest = first.meetings[0]
    assert newest.participant_count == newest.peak_participants == 5
    identities = [p.identity async for p in owner.meetings.list_participants(newest.name, page_size=2)]
    assert identities == [f"guest-{j}" for j in range(5)]


async def test_retention_purges_ended_meetings(callers: Callers, server: ControlServer) -> None:
    people = await _people(callers)
    room = await _room(people)
    owner = people["owner"][0]
    node = Node(await callers.key("sfu:report"))
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    r = room.name
    await node.report(
        [
            node.event(r, "RM_old", long_ago, **STARTED),
            node.event(r, "RM_old", long_ago, **joined("guest-1", "PA_1")),
            node.event(r, "RM_old", long_ago + timedelta(hours=1), **FINISHED),
            node.event(r, "RM_open", long_ago, **STARTED),
            node.event(r, "RM_recent", long_ago + timedelta(days=300), **STARTED),
            node.event(r, "RM_recent", long_ago + timedelta(days=300, hours=1), **FINISHED),
        ]
    )
    assert len([m async for m in owner.meetings.list(r)]) == 3
    engine = db.create_engine(server.settings.database_url)
    try:
        sessions = db.sessions(engine)
        forever = MeetingUseCases(dataclasses.replace(server.settings, meeting_retention=timedelta(0)), sessions)
        assert await forever.purge_expired(now=datetime(2001, 1, 1, tzinfo=UTC)) == 0
        yearly = MeetingUseCases(dataclasses.replace(server.settings, meeting_retention=timedelta(days=90)), sessions)
        assert await yearly.purge_expired(now=datetime(2001, 1, 1, tzinfo=UTC)) == 1
    finally:
        await engine.dispose()
    remaining = [m async for m in owner.meetings.list(r)]
    assert sorted(m.active for m in remaining) == [False, True]  # the open one and the recent one
    assert all(m.start_time.ToDatetime(tzinfo=UTC) != long_ago or m.active for m in remaining)
