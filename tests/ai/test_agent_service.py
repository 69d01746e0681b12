"""The metadata agent as the AI service's resource (``MetadataAgentService``): its timeline as
the contract shows it, the service's rules (who may start, read and stop which agent; a start
sent again; an agent that cannot join; agents a previous process left), and where control
places an agent's speaker turns in a recording's file. The agent in a real recorded meeting is
``tests/egress/test_record_transcribe.py``'s."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from ai._agent_timeline import Timeline, TimelineEvent
from ai._mapper import metadata_agent
from ai._models import JobState, MetadataAgentRow
from control._recording_followups import placed_turns
from parley import Client, ParleyError
from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import metadata_agent_service_pb2_grpc as agent_grpc
from parley.ai.v1 import resources_pb2 as ai_res
from parley.server import db

from ..egress.stack import free_port
from .conftest import AiStack

STARTED = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def _seconds(value: duration_pb2.Duration) -> float:
    return value.ToNanoseconds() / 1e9


def test_a_timeline_is_the_agents_events_and_speaker_turns() -> None:
    row = MetadataAgentRow(
        id="abc123",
        owner="apiKeys/k1",
        room="rooms/r1",
        state=JobState.SUCCEEDED,
        created_at=STARTED,
        updated_at=STARTED + timedelta(minutes=1),
        ended_at=STARTED + timedelta(minutes=1),
    )
    timeline = Timeline(
        started_at=STARTED.isoformat(),
        participants={"alice": "Alice B.", "bob": "Bob"},
        events=(
            TimelineEvent(type="joined", time=0.0, identity="alice", name="Alice"),
            TimelineEvent(type="speech_start", time=1.25, identity="alice", name="Alice"),
            TimelineEvent(type="chat", time=2.0, identity="bob", name="Bob", text="Hi"),
            TimelineEvent(type="speech_end", time=3.5, identity="alice", name="Alice"),
            TimelineEvent(type="renamed", time=4.0, identity="alice", name="Alice B."),
            TimelineEvent(type="left", time=5.0, identity="bob", name="Bob"),
        ),
    )
    agent = metadata_agent(row, timeline)
    assert (agent.name, agent.room, agent.state, agent.creator) == (
        "metadataAgents/abc123",
        "rooms/r1",
        ai_res.JOB_STATE_SUCCEEDED,
        "apiKeys/k1",
    )
    assert agent.start_time.ToDatetime(tzinfo=UTC) == STARTED and agent.HasField("end_time")
    assert [(e.type, _seconds(e.offset), e.participant_identity, e.participant_name, e.text) for e in agent.events] == [
        (agent_pb.MEETING_EVENT_TYPE_JOINED, 0.0, "alice", "Alice", ""),
        (agent_pb.MEETING_EVENT_TYPE_SPEECH_START, 1.25, "alice", "Alice", ""),
        (agent_pb.MEETING_EVENT_TYPE_CHAT, 2.0, "bob", "Bob", "Hi"),
        (agent_pb.MEETING_EVENT_TYPE_SPEECH_END, 3.5, "alice", "Alice", ""),
        (agent_pb.MEETING_EVENT_TYPE_RENAMED, 4.0, "alice", "Alice B.", ""),
        (agent_pb.MEETING_EVENT_TYPE_LEFT, 5.0, "bob", "Bob", ""),
    ]
    # The latest name, as the transcript should carry it.
    assert [(t.speaker, _seconds(t.start_offset), _seconds(t.end_offset)) for t in agent.speaker_turns] == [
        ("Alice B.", 1.25, 3.5)
    ]
    # Running, or failed: no timeline yet (or ever), the error when there is one.
    row.state, row.error_code, row.error_message = JobState.FAILED, "ABORTED", "the AI service restarted"
    failed = metadata_agent(row)
    assert not failed.events and not failed.HasField("start_time")
    assert (failed.error.code, failed.error.message) == (grpc.StatusCode.ABORTED.value[0], "the AI service restarted")


def test_speaker_turns_are_placed_in_the_files_time() -> None:
    agent = agent_pb.MetadataAgent(
        speaker_turns=[
            ai_res.SpeakerTurn(speaker="Alice", start_offset=_duration(1.0), end_offset=_duration(3.0)),
            ai_res.SpeakerTurn(speaker="Bob", start_offset=_duration(4.0), end_offset=_duration(6.5)),
        ]
    )
    agent.start_time.FromDatetime(STARTED)

    def placed(file_start: datetime | None) -> list[tuple[str, float, float]]:
        return [(t.speaker, _seconds(t.start_offset), _seconds(t.end_offset)) for t in placed_turns(agent, file_start)]

    # The agent joined 2 s after the file's first media: its times move 2 s later.
    assert placed(STARTED - timedelta(seconds=2)) == [("Alice", 3.0, 5.0), ("Bob", 6.0, 8.5)]
    # It joined 5 s before: Alice's turn was before the file, Bob's is cut at its start.
    assert placed(STARTED + timedelta(seconds=5)) == [("Bob", 0.0, 1.5)]
    assert placed(None) == [("Alice", 1.0, 3.0), ("Bob", 4.0, 6.5)]


# -- the service's rules -----------------------------------------------------------------------


async def _call(client: Client, method: str, request: Any) -> agent_pb.MetadataAgent:
    assert client.ai_channel is not None
    stub = agent_grpc.MetadataAgentServiceStub(client.ai_channel)
    try:
        agent: agent_pb.MetadataAgent = await getattr(stub, method)(request, metadata=client._metadata)
    except grpc.aio.AioRpcError as error:
        raise ParleyError.from_rpc_error(error) from None
    return agent


async def _refused(client: Client, method: str, request: Any) -> ParleyError:
    with pytest.raises(ParleyError) as refused:
        await _call(client, method, request)
    return refused.value


def _start(agent_id: str, room: str = "rooms/abc-defg-hij", sfu_url: str = "") -> agent_pb.StartMetadataAgentRequest:
    return agent_pb.StartMetadataAgentRequest(
        room=room, sfu_url=sfu_url or f"grpc://127.0.0.1:{free_port()}", join_token="not.a.token", agent_id=agent_id
    )


async def _ended(client: Client, name: str, within: float = 60.0) -> agent_pb.MetadataAgent:
    deadline = time.monotonic() + within
    while (agent := await _call(client, "GetMetadataAgent", agent_pb.GetMetadataAgentRequest(name=name))).state == (
        ai_res.JOB_STATE_RUNNING
    ):
        assert time.monotonic() < deadline, agent
        await asyncio.sleep(0.25)
    return agent


async def test_the_rules_of_metadata_agents(ai_stack: AiStack) -> None:
    alice, alice_name = await ai_stack.user()
    bob, _ = await ai_stack.user()
    reader, writer_without_read = await ai_stack.key("ai:read"), await ai_stack.key("ai:write")
    agent_id = f"rules-{time.time_ns()}"

    assert (await _refused(reader, "StartMetadataAgent", _start(agent_id))).code == grpc.StatusCode.PERMISSION_DENIED
    bad = agent_pb.StartMetadataAgentRequest(room="room-1", sfu_url="not a url", agent_id="Not_An_Id")
    invalid = await _refused(alice, "StartMetadataAgent", bad)
    assert invalid.code == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in invalid.field_violations} == {"room", "sfu_url", "join_token", "agent_id"}

    # No SFU where the token points: the agent starts, cannot join, and fails saying why.
    started = await _call(alice, "StartMetadataAgent", _start(agent_id))
    assert (started.name, started.state, started.creator) == (
        f"metadataAgents/{agent_id}",
        ai_res.JOB_STATE_RUNNING,
        alice_name,
    )
    again = await _call(alice, "StartMetadataAgent", _start(agent_id))  # sent again: the same agent
    assert (again.name, again.create_time) == (started.name, started.create_time)
    taken = await _refused(alice, "StartMetadataAgent", _start(agent_id, room="rooms/other-room-xyz"))
    assert taken.code == grpc.StatusCode.ALREADY_EXISTS
    ended = await _ended(alice, started.name)
    assert ended.state == ai_res.JOB_STATE_FAILED and ended.error.message.startswith("the agent failed"), ended
    assert not ended.events and ended.HasField("end_time")

    get = agent_pb.GetMetadataAgentRequest(name=started.name)
    assert (await _refused(bob, "GetMetadataAgent", get)).code == grpc.StatusCode.NOT_FOUND  # private
    assert (await _call(reader, "GetMetadataAgent", get)).state == ai_res.JOB_STATE_FAILED  # ai:read sees all
    stop = agent_pb.StopMetadataAgentRequest(name=started.name)
    assert (await _refused(reader, "StopMetadataAgent", stop)).code == grpc.StatusCode.PERMISSION_DENIED
    assert (await _refused(writer_without_read, "StopMetadataAgent", stop)).code == grpc.StatusCode.NOT_FOUND
    assert await _call(alice, "StopMetadataAgent", stop) == ended  # an ended agent is left as it is


async def test_agents_a_previous_process_left_running_fail(ai_stack: AiStack) -> None:
    """As after a restart: a RUNNING row whose room has no agent on the cluster any more."""
    service = ai_stack.ai.agents
    agent_id = f"lost-{time.time_ns()}"
    sessions = db.sessions(ai_stack.ai._engine)
    async with sessions.writes.begin() as session:
        session.add(
            MetadataAgentRow(
                id=agent_id,
                owner="apiKeys/gone",
                room="rooms/no-agent-here",
                state=JobState.RUNNING,
                created_at=STARTED,
                updated_at=STARTED,
            )
        )
    await service.resume()
    async with sessions.reads() as session:
        row = await session.get(MetadataAgentRow, agent_id)
    assert row is not None and row.state == JobState.FAILED
    assert (row.error_code, row.error_message) == ("ABORTED", "the AI service restarted")
