"""Meeting history end to end: bots meet on a real SFU node that reports to a real control
plane, and the room's owner reads who was there; control going away mid-meeting loses nothing."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiortc.mediastreams import AudioStreamTrack

from control import ControlServer, ControlSettings
from parley import Client
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import resources_pb2 as res
from parley.room import Room
from sfu import SfuServer, SfuSettings

from .conftest import TOKEN_SECRET

#: How long a test waits for reports to reach control (a bound, not a measure of speed).
WITHIN = 30.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def _control(database_url: str, port: int) -> AsyncIterator[ControlServer]:
    settings = ControlSettings(database_url=database_url, token_secret=TOKEN_SECRET, dev_login=True)
    async with ControlServer(settings, address=f"127.0.0.1:{port}") as server:
        yield server


async def _meetings(owner: Client, slug: str) -> list[meeting_pb.Meeting]:
    return [m async for m in owner.meetings.list(slug)]


async def _eventually_ended(owner: Client, slug: str) -> tuple[meeting_pb.Meeting, list[meeting_pb.MeetingParticipant]]:
    async with asyncio.timeout(WITHIN):
        while True:
            meetings = await _meetings(owner, slug)
            if meetings and not meetings[0].active:
                participants = [p async for p in owner.meetings.list_participants(meetings[0].name)]
                return meetings[0], participants
            await asyncio.sleep(0.2)


async def _meet(sfu_url: str, host_token: str, guest_token: str) -> None:
    """The owner and a guest meet: both publish audio, the guest leaves, then the owner."""
    async with await Room.connect(sfu_url, host_token) as host:
        await host.publish(AudioStreamTrack(), source="microphone")
        async with await Room.connect(sfu_url, guest_token) as guest:
            await guest.publish(AudioStreamTrack(), source="microphone")
            await host.wait_for("track_subscribed", within=WITHIN)
            await asyncio.sleep(0.5)


@pytest.mark.parametrize("control_restarts", [False, True], ids=["steady", "control-restarts"])
async def test_the_owner_sees_who_attended(tmp_path: Path, control_restarts: bool) -> None:
    database_url = f"sqlite:///{tmp_path / 'control.db'}"
    control_port = _free_port()
    async with _control(database_url, control_port) as control:
        key, secret = await control.control.create_api_key(None, "sfu node", ["sfu:report"])
        sfu_settings = SfuSettings(
            token_secrets={"parley": TOKEN_SECRET},
            grpc_address="127.0.0.1:0",
            empty_timeout=0.5,
            control_target=control.target,
            report_api_key=f"{key.id}.{secret}",
        )
        async with SfuServer(sfu_settings) as sfu, Client(control.target) as anonymous:
            login = await anonymous.users.dev_login("history-owner", display_name="Owner")
            owner = anonymous.with_bearer(login.access_token)
            room = await owner.rooms.create(display_name="History", access_level=res.ACCESS_LEVEL_PUBLIC)
            host = (await owner.rooms.join(room.slug)).grant.token
            guest = (await anonymous.rooms.join(room.slug, display_name="Guest")).grant.token
            if control_restarts:
                # Control goes away for the whole meeting; the SFU keeps its reports until it is back.
                await control.stop(grace=0)
                await _meet(f"grpc://{sfu.target}", host, guest)
                await asyncio.sleep(1.0)  # the room closes (empty_timeout) while control is away
                async with _control(database_url, control_port), Client(control.target) as back:
                    meeting, participants = await _eventually_ended(back.with_bearer(login.access_token), room.slug)
            else:
                await _meet(f"grpc://{sfu.target}", host, guest)
                meeting, participants = await _eventually_ended(owner, room.slug)
    assert meeting.participant_count == 2 and meeting.peak_participants == 2
    assert meeting.end_time.ToDatetime() >= meeting.start_time.ToDatetime()
    by_name = {p.display_name: p for p in participants}
    assert set(by_name) == {"Owner", "Guest"}
    assert by_name["Owner"].user == login.user.name and by_name["Guest"].user == ""
    for participant in participants:
        assert participant.state == meeting_pb.PARTICIPANT_STATE_LEFT
        assert participant.leave_time.ToDatetime() >= participant.join_time.ToDatetime()
    # The guest left before the owner did.
    assert by_name["Guest"].leave_time.ToDatetime() <= by_name["Owner"].leave_time.ToDatetime()
