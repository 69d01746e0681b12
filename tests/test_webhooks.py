"""Webhooks with real parts: a real HTTP receiver (``parley.testing.WebhookReceiver``, which
checks every signature with the SDK), real control servers on a fresh PostgreSQL database each,
and SFU reports sent over gRPC as a node sends them (the end-to-end meeting with bots and a real
SFU is ``test_a_real_meeting_reaches_the_receiver``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy
from aiortc.mediastreams import AudioStreamTrack

from control import ControlServer, ControlSettings
from control._delivery import breaker_pause, retry_delay
from control._meetings import MeetingUseCases
from control._targets import TargetRefused, check_target, parse_networks
from parley import Client, InvalidArgument, NotFound
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc
from parley.control.v1 import webhook_service_pb2 as webhook_pb
from parley.room import Room
from parley.testing import WebhookReceiver
from sfu import SfuServer, SfuSettings

from .conftest import TOKEN_SECRET, fresh_pg_database

#: How long a test waits for deliveries (a bound, not a measure of speed).
WITHIN = 30.0

#: Retries and polls fast enough for tests; loopback receivers allowed.
FAST: dict[str, Any] = {
    "webhook_allowed_networks": ("127.0.0.0/8",),
    "webhook_retry_initial": timedelta(milliseconds=50),
    "webhook_retry_max_interval": timedelta(milliseconds=400),
    "webhook_timeout": timedelta(seconds=2),
    "webhook_poll_interval": timedelta(milliseconds=100),
}

SCOPES = ["rooms:create", "webhooks:manage", "sfu:report"]

#: The events of ``Node.meeting``, in the order they happen.
MEETING_EVENTS = [
    "room_started",
    "participant_joined",
    "participant_joined",
    "track_published",
    "track_unpublished",
    "participant_left",
    "participant_left",
    "room_finished",
]


@pytest.fixture
def database_url() -> Iterator[str]:
    """A fresh PostgreSQL database per test: webhooks receive the events of every room."""
    with fresh_pg_database("parley_webhooks") as url:
        yield url


@pytest.fixture(params=["postgresql", "sqlite"])
def any_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """PostgreSQL (a fresh database) or SQLite (the embedded default: no SKIP LOCKED, one writer)."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("database_url"))
    return f"sqlite:///{tmp_path / 'control.db'}"


def _settings(database_url: str, **overrides: Any) -> ControlSettings:
    return ControlSettings(database_url=database_url, token_secret=TOKEN_SECRET, **{**FAST, **overrides})


@dataclass
class Control:
    """A control server and a client with an API key for rooms, webhooks and reports."""

    server: ControlServer
    client: Client

    async def room(self) -> str:
        return await _room(self.client)


async def _room(client: Client) -> str:
    """A new public room's id."""
    room = await client.rooms.create(display_name="Webhooks", access_level=res.ACCESS_LEVEL_PUBLIC)
    return room.name.removeprefix("rooms/")


@asynccontextmanager
async def _control(settings: ControlSettings, *, address: str = "127.0.0.1:0") -> AsyncIterator[Control]:
    async with ControlServer(settings, address=address) as server:
        key, secret = await server.control.create_api_key(
            None, "webhook tests", ["rooms:create", "webhooks:manage", "sfu:report"]
        )
        async with Client(server.target, bearer=f"{key.id}.{secret}") as client:
            yield Control(server, client)


async def _webhook(client: Client, receiver: WebhookReceiver, *event_types: str) -> webhook_pb.Webhook:
    created = await client.webhooks.create(receiver.url, event_types=event_types, display_name="test receiver")
    receiver.secrets[created.webhook.signing_key_id] = created.secret
    return created.webhook


@dataclass
class Node:
    """An SFU node as control sees it: reports with consecutive sequence numbers."""

    client: Client
    node: str = field(default_factory=lambda: f"node-{uuid.uuid4().hex[:12]}")
    sequence: int = 0

    async def report(self, room: str, meeting_sid: str, *steps: dict[str, Any]) -> None:
        events = []
        for step in steps:
            self.sequence += 1
            event = report_pb.SfuEvent(sequence=self.sequence, room=room, meeting_sid=meeting_sid, **step)
            event.time.FromDatetime(datetime.now(UTC))
            events.append(event)
        stub = report_grpc.SfuReportServiceStub(self.client.channel)
        request = report_pb.ReportEventsRequest(node=self.node, node_url=f"grpc://{self.node}.test:7880", events=events)
        await stub.ReportEvents(request, metadata=self.client._metadata)

    async def meeting(self, room: str, *, one_report: bool = False) -> None:
        """A meeting of two: Ann and Bob join, Ann publishes and unpublishes, Bob then Ann
        leave (``MEETING_EVENTS``); one report per event unless ``one_report``."""
        sid = f"RM_{uuid.uuid4().hex[:8]}"
        steps: list[dict[str, Any]] = [
            {"room_started": report_pb.RoomStarted()},
            {
                "participant_joined": report_pb.ParticipantJoined(
                    identity="ann", participant_sid="PA_ann", display_name="Ann"
                )
            },
            {
                "participant_joined": report_pb.ParticipantJoined(
                    identity="bob", participant_sid="PA_bob", display_name="Bob"
                )
            },
            {
                "track_published": report_pb.TrackPublished(
                    identity="ann", track_sid="TR_ann", source=res.TRACK_SOURCE_MICROPHONE
                )
            },
            {"track_unpublished": report_pb.TrackUnpublished(identity="ann", track_sid="TR_ann")},
            {"participant_left": report_pb.ParticipantLeft(identity="bob", participant_sid="PA_bob")},
            {"participant_left": report_pb.ParticipantLeft(identity="ann", participant_sid="PA_ann")},
            {"room_finished": report_pb.RoomFinished()},
        ]
        if one_report:
            await self.report(room, sid, *steps)
        else:
            for step in steps:
                await self.report(room, sid, step)


def _joined(identity: str, display_name: str) -> report_pb.ParticipantJoined:
    return report_pb.ParticipantJoined(identity=identity, participant_sid=f"PA_{identity}", display_name=display_name)


def _by_room(receiver: WebhookReceiver) -> dict[str, list[str]]:
    rooms: dict[str, list[str]] = {}
    for received in receiver.events:
        rooms.setdefault(received.event["room"], []).append(received.type)
    return rooms


def _assert_once(receiver: WebhookReceiver) -> None:
    ids = receiver.event_ids()
    assert len(ids) == len(set(ids)), "an event arrived twice"


# -- the resources ------------------------------------------------------------------------


async def test_webhooks_are_created_read_changed_rotated_and_deleted(database_url: str) -> None:
    async with _control(_settings(database_url)) as control:
        hooks = control.client.webhooks
        created = await hooks.create("https://93.184.215.14/hooks", event_types=["room_started"], display_name="CRM")
        webhook = created.webhook
        assert created.secret.startswith("whsec_") and len(created.secret) > 40
        assert webhook.signing_key_id == f"{webhook.name.removeprefix('webhooks/')}.1"
        assert list(webhook.event_types) == ["room_started"] and webhook.display_name == "CRM"
        assert (await hooks.get(webhook.name)) == webhook
        assert [w.name async for w in hooks.list()] == [webhook.name]

        webhook.url = "https://93.184.215.14/v2/hooks"
        del webhook.event_types[:]
        updated = await hooks.update(webhook, update_mask=["url", "event_types"])
        assert updated.url == "https://93.184.215.14/v2/hooks" and not updated.event_types
        assert updated.display_name == "CRM"

        rotated = await hooks.rotate_secret(webhook.name)
        assert rotated.secret != created.secret
        assert rotated.webhook.signing_key_id.endswith(".2")

        await hooks.delete(webhook.name)
        with pytest.raises(NotFound):
            await hooks.get(webhook.name)


BAD_URLS = [
    ("ftp://93.184.215.14/hooks", "http:// or https://"),
    ("http://127.0.0.1:8080/hooks", "loopback, private or reserved"),
    ("http://localhost/hooks", "loopback, private or reserved"),
    ("http://10.1.2.3/hooks", "loopback, private or reserved"),
    ("http://192.168.1.20/hooks", "loopback, private or reserved"),
    ("http://169.254.169.254/latest/meta-data", "loopback, private or reserved"),
    ("http://[::1]/hooks", "loopback, private or reserved"),
    ("http://[::ffff:10.0.0.1]/hooks", "loopback, private or reserved"),
    ("http://[fd00::1]/hooks", "loopback, private or reserved"),
    ("http://0.0.0.0/hooks", "loopback, private or reserved"),
    ("http://user:secret@93.184.215.14/hooks", "credentials"),
    ("http://93.184.215.14:99999/hooks", "malformed"),
    ("http://no-such-host.invalid/hooks", "does not resolve"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
async def test_unsafe_urls_are_invalid_argument_and_nothing_is_written(
    database_url: str, url: str, reason: str
) -> None:
    # No allowance: the production default.
    async with _control(_settings(database_url, webhook_allowed_networks=())) as control:
        with pytest.raises(InvalidArgument) as raised:
            await control.client.webhooks.create(url)
        [violation] = raised.value.field_violations
        assert violation.field == "webhook.url" and reason in violation.description
        assert [w async for w in control.client.webhooks.list()] == []
        good = (await control.client.webhooks.create("https://93.184.215.14/hooks")).webhook
        with pytest.raises(InvalidArgument):
            await control.client.webhooks.update(webhook_pb.Webhook(name=good.name, url=url), update_mask=["url"])
        assert (await control.client.webhooks.get(good.name)).url == "https://93.184.215.14/hooks"


async def test_allowed_networks_open_only_themselves() -> None:
    allowed = parse_networks(["127.0.0.0/8"])
    await check_target("http://127.0.0.1:9000/x", allowed)
    with pytest.raises(TargetRefused):
        await check_target("http://10.0.0.1/x", allowed)
    with pytest.raises(ValueError, match="not a network"):
        parse_networks(["10.0.0.0/33"])


def test_retries_back_off_exponentially_with_jitter_up_to_the_maximum() -> None:
    settings = _settings(
        "sqlite:///unused.db",
        webhook_retry_initial=timedelta(seconds=1),
        webhook_retry_max_interval=timedelta(seconds=10),
    )
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (60, 10.0)]:
        delays = [retry_delay(settings, attempts).total_seconds() for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), (attempts, delays)
        assert len(set(delays)) > 1  # spread out: retries of many deliveries do not come in step


def test_breaker_pauses_double_with_each_trip_up_to_the_maximum() -> None:
    settings = _settings(
        "sqlite:///unused.db",
        webhook_breaker_pause=timedelta(seconds=30),
        webhook_retry_max_interval=timedelta(minutes=10),
    )
    pauses = [breaker_pause(settings, trips).total_seconds() for trips in (1, 2, 3, 5, 6, 40)]
    assert pauses == [30, 60, 120, 480, 600, 600]


# -- delivery -----------------------------------------------------------------------------


async def test_a_meeting_arrives_signed_in_order_and_once(any_database_url: str) -> None:
    async with _control(_settings(any_database_url)) as control, WebhookReceiver() as receiver:
        webhook = await _webhook(control.client, receiver)
        room = await control.room()
        await Node(control.client).meeting(room)
        events = await receiver.wait_for_events(len(MEETING_EVENTS), seconds=WITHIN)
        await asyncio.sleep(0.3)  # nothing more comes
    assert [e.type for e in receiver.events] == MEETING_EVENTS
    assert receiver.rejected == 0 and receiver.calls == len(MEETING_EVENTS)
    _assert_once(receiver)
    first, joined, *_, finished = [e.event for e in events]
    assert first["room"] == f"rooms/{room}" and first["meeting"]["active"] is True
    assert joined["participant"]["identity"] == "ann" and joined["participant"]["displayName"] == "Ann"
    assert joined["participant"]["state"] == "PARTICIPANT_STATE_ACTIVE"
    track = events[3].event
    assert track["track"] == {"sid": "TR_ann", "source": "TRACK_SOURCE_MICROPHONE"}
    assert track["participant"]["identity"] == "ann"
    assert finished["meeting"]["active"] is False and finished["meeting"]["peakParticipants"] == 2
    async with _control(_settings(any_database_url)) as control:
        log = await _settled_log(control.client, webhook.name)
    assert len(log) == len(MEETING_EVENTS)
    assert {d.state for d in log} == {webhook_pb.WEBHOOK_DELIVERY_STATE_DELIVERED}
    assert all(d.attempts == 1 and d.last_status_code == 200 and not d.last_error for d in log)
    assert [d.event for d in log] == MEETING_EVENTS[::-1]  # newest first


async def test_event_types_select_what_a_webhook_receives(database_url: str) -> None:
    async with _control(_settings(database_url)) as control, WebhookReceiver() as everything, WebhookReceiver() as ends:
        await _webhook(control.client, everything)
        await _webhook(control.client, ends, "room_finished")
        await Node(control.client).meeting(await control.room())
        await everything.wait_for_events(len(MEETING_EVENTS), seconds=WITHIN)
        await ends.wait_for_events(1, seconds=WITHIN)
        await asyncio.sleep(0.3)
    assert [e.type for e in ends.events] == ["room_finished"]
    assert everything.events[-1].id == ends.events[0].id  # one event, the same id for both


async def test_a_receiver_failing_its_first_calls_gets_everything_in_order(any_database_url: str) -> None:
    async with _control(_settings(any_database_url)) as control, WebhookReceiver() as receiver:
        webhook = await _webhook(control.client, receiver)
        receiver.fail_next(3, status=503)
        rooms = [await control.room() for _ in range(2)]
        node = Node(control.client)
        for room in rooms:
            await node.meeting(room, one_report=True)
        await receiver.wait_for_events(2 * len(MEETING_EVENTS), seconds=WITHIN)
        log = await _settled_log(control.client, webhook.name)
    assert receiver.calls == 2 * len(MEETING_EVENTS) + 3
    _assert_once(receiver)
    assert _by_room(receiver) == {f"rooms/{room}": MEETING_EVENTS for room in rooms}
    retried = [d for d in log if d.attempts > 1]
    assert retried and all(d.state == webhook_pb.WEBHOOK_DELIVERY_STATE_DELIVERED for d in log)


async def test_a_rolled_back_report_produces_no_event(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with _control(_settings(database_url)) as control, WebhookReceiver() as receiver:
        await _webhook(control.client, receiver)
        room = await control.room()
        original = MeetingUseCases._apply_one
        applied = 0

        async def fail_on_the_third(self: MeetingUseCases, batch: Any, event: report_pb.SfuEvent) -> None:
            nonlocal applied
            applied += 1
            if applied == 3:
                raise RuntimeError("the database went away mid-report")
            await original(self, batch, event)

        monkeypatch.setattr(MeetingUseCases, "_apply_one", fail_on_the_third)
        node = Node(control.client)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await node.meeting(room, one_report=True)
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        monkeypatch.undo()
        await asyncio.sleep(0.5)
        assert receiver.calls == 0
        assert _count(database_url, "webhook_events") == 0 and _count(database_url, "meetings") == 0
        # The node sends the report again (same sequence numbers): now it all arrives, once.
        node.sequence = 0
        await node.meeting(room, one_report=True)
        await receiver.wait_for_events(len(MEETING_EVENTS), seconds=WITHIN)
    assert [e.type for e in receiver.events] == MEETING_EVENTS


async def _settled_log(client: Client, webhook: str) -> list[webhook_pb.WebhookDelivery]:
    """The delivery log once no delivery is pending (outcomes are recorded just after the
    receiver answers)."""
    async with asyncio.timeout(WITHIN):
        while True:
            log = [d async for d in client.webhooks.list_deliveries(webhook)]
            if all(d.state != webhook_pb.WEBHOOK_DELIVERY_STATE_PENDING for d in log):
                return log
            await asyncio.sleep(0.05)


def _count(database_url: str, table: str) -> int:
    engine = sqlalchemy.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


async def test_two_replicas_deliver_each_event_once_and_in_order(database_url: str) -> None:
    settings = _settings(database_url)
    async with _control(settings) as one, _control(settings) as two, WebhookReceiver() as receiver:
        await _webhook(one.client, receiver)
        rooms = [await one.room() for _ in range(6)]
        # Each replica receives half the nodes' reports, and both deliver.
        nodes = [Node(one.client), Node(two.client), Node(one.client), Node(two.client)]
        await asyncio.gather(
            *(nodes[index % len(nodes)].meeting(room) for index, room in enumerate(rooms[:4])),
        )
        await asyncio.gather(*(nodes[index].meeting(room) for index, room in enumerate(rooms[4:])))
        await receiver.wait_for_events(len(rooms) * len(MEETING_EVENTS), seconds=WITHIN)
        await asyncio.sleep(0.5)
    _assert_once(receiver)
    assert receiver.calls == len(rooms) * len(MEETING_EVENTS)
    assert _by_room(receiver) == {f"rooms/{room}": MEETING_EVENTS for room in rooms}


async def test_a_target_that_keeps_failing_is_paused_then_resumed(any_database_url: str) -> None:
    settings = _settings(
        any_database_url,
        webhook_breaker_failures=3,
        webhook_breaker_pause=timedelta(seconds=2),
        webhook_retry_max_interval=timedelta(seconds=5),  # a second pause would last 4 s
    )
    async with _control(settings) as control, WebhookReceiver() as receiver:
        webhook = await _webhook(control.client, receiver)
        receiver.fail_next(1000, status=500)
        rooms = [await control.room() for _ in range(6)]
        node = Node(control.client)
        for room in rooms:  # six rooms' deliveries are in flight, and fail, together
            await node.meeting(room, one_report=True)
        async with asyncio.timeout(WITHIN):
            while not (paused := await control.client.webhooks.get(webhook.name)).HasField("paused_until"):
                await asyncio.sleep(0.05)
        assert paused.consecutive_failures >= 3
        # The first pause, however many attempts failed together.
        pause = paused.paused_until.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
        assert pause <= timedelta(seconds=2)
        calls = receiver.calls
        await asyncio.sleep(1.0)  # paused: nothing is sent
        assert receiver.calls == calls
        receiver.stop_failing()
        await receiver.wait_for_events(len(rooms) * len(MEETING_EVENTS), seconds=WITHIN)
        resumed = await control.client.webhooks.get(webhook.name)
    assert resumed.consecutive_failures == 0 and not resumed.HasField("paused_until")
    assert _by_room(receiver) == {f"rooms/{room}": MEETING_EVENTS for room in rooms}


async def test_a_delivery_given_up_on_no_longer_holds_the_room_back_and_can_be_redelivered(
    database_url: str,
) -> None:
    settings = _settings(database_url, webhook_retry_for=timedelta(milliseconds=300))
    async with _control(settings) as control, WebhookReceiver() as receiver:
        webhook = await _webhook(control.client, receiver)
        receiver.fail_next(1000, status=500)
        room = await control.room()
        node = Node(control.client)
        await node.report(room, "RM_given_up", {"room_started": report_pb.RoomStarted()})

        async def failed() -> list[webhook_pb.WebhookDelivery]:
            state = webhook_pb.WEBHOOK_DELIVERY_STATE_FAILED
            return [d async for d in control.client.webhooks.list_deliveries(webhook.name, state=state)]

        async with asyncio.timeout(WITHIN):
            while not (given_up := await failed()):
                await asyncio.sleep(0.1)
        [delivery] = given_up
        assert delivery.attempts >= 2 and delivery.last_status_code == 500 and "HTTP 500" in delivery.last_error
        receiver.stop_failing()
        await node.report(room, "RM_given_up", {"room_finished": report_pb.RoomFinished()})
        await receiver.wait_for_events(1, seconds=WITHIN)
        assert [e.type for e in receiver.events] == ["room_finished"]
        again = await control.client.webhooks.redeliver(delivery.name)
        assert again.state == webhook_pb.WEBHOOK_DELIVERY_STATE_PENDING
        await receiver.wait_for_events(2, seconds=WITHIN)
    assert receiver.events[1].type == "room_started" and receiver.events[1].id == delivery.event_id


async def test_deleting_a_webhook_drops_what_waits_for_it(database_url: str) -> None:
    async with _control(_settings(database_url)) as control, WebhookReceiver() as receiver:
        webhook = await _webhook(control.client, receiver)
        await receiver.down()
        await Node(control.client).meeting(await control.room(), one_report=True)
        await control.client.webhooks.delete(webhook.name)
        assert _count(database_url, "webhook_deliveries") == 0
        await receiver.up()
        await asyncio.sleep(0.5)
    assert receiver.calls == 0


# -- a receiver that was down, and control killed meanwhile --------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _spawn_control(database_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")},
        "PARLEY_DATABASE_URL": database_url,
        "PARLEY_TOKEN_SECRET": TOKEN_SECRET,
        "PARLEY_GRPC_ADDRESS": f"127.0.0.1:{port}",
        "PARLEY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PARLEY_WEBHOOK_RETRY_INITIAL": "0.05",
        "PARLEY_WEBHOOK_RETRY_MAX_INTERVAL": "0.5",
        "PARLEY_WEBHOOK_TIMEOUT": "1",
        "PARLEY_WEBHOOK_POLL_INTERVAL": "0.1",
        # Not paused by the circuit breaker while the receiver is down (its own test covers it).
        "PARLEY_WEBHOOK_BREAKER_FAILURES": "1000",
        "PARLEY_METRICS_ADDRESS": "127.0.0.1:0",
    }
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "control"], env=env, stdout=output, stderr=subprocess.STDOUT)


async def _serving(target: str) -> None:
    async with asyncio.timeout(WITHIN), grpc.aio.insecure_channel(target) as channel:
        await channel.channel_ready()


async def test_a_receiver_down_while_control_is_killed_loses_nothing(database_url: str, tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "control.log"
    # The schema and the first key, as an operator makes them.
    async with _control(_settings(database_url)) as setup:
        key, secret = await setup.server.control.create_api_key(None, "webhooks", SCOPES)
    process = _spawn_control(database_url, port, log)
    try:
        await _serving(f"127.0.0.1:{port}")
        async with WebhookReceiver() as receiver, Client(f"127.0.0.1:{port}", bearer=f"{key.id}.{secret}") as client:
            await _webhook(client, receiver)
            await receiver.down()
            rooms = [await _room(client) for _ in range(3)]
            node = Node(client)
            for room in rooms:
                await node.meeting(room)
            await asyncio.sleep(0.5)  # attempts fail: connection refused
            process.send_signal(signal.SIGKILL)
            process.wait()
            await receiver.up()
            await asyncio.sleep(0.5)
            assert receiver.calls == 0  # nobody is left to deliver
            process = _spawn_control(database_url, port, log)
            await receiver.wait_for_events(len(rooms) * len(MEETING_EVENTS), seconds=WITHIN)
            await asyncio.sleep(0.3)
    finally:
        process.terminate()
        process.wait()
    _assert_once(receiver)
    assert _by_room(receiver) == {f"rooms/{room}": MEETING_EVENTS for room in rooms}


# -- end to end: bots in a real meeting ----------------------------------------------------


async def test_a_real_meeting_reaches_the_receiver(database_url: str) -> None:
    async with _control(_settings(database_url)) as control, WebhookReceiver() as receiver:
        key, secret = await control.server.control.create_api_key(None, "sfu node", ["sfu:report"])
        sfu_settings = SfuSettings(
            token_secrets={"parley": TOKEN_SECRET},
            grpc_address="127.0.0.1:0",
            empty_timeout=0.5,
            control_target=control.server.target,
            report_api_key=f"{key.id}.{secret}",
        )
        await _webhook(control.client, receiver)
        async with SfuServer(sfu_settings) as sfu, Client(control.server.target) as anonymous:
            room = await control.room()
            host = (await anonymous.rooms.join(room, display_name="Host")).grant.token
            guest = (await anonymous.rooms.join(room, display_name="Guest")).grant.token
            async with await Room.connect(f"grpc://{sfu.target}", host) as host_bot:
                await host_bot.publish(AudioStreamTrack(), source="microphone")
                async with await Room.connect(f"grpc://{sfu.target}", guest) as guest_bot:
                    await guest_bot.publish(AudioStreamTrack(), source="microphone")
                    await host_bot.wait_for("track_subscribed", within=WITHIN)
                    await asyncio.sleep(0.5)  # the guest's media connects: attending, not an attempt
            await receiver.wait_for(lambda r: bool(r.events) and r.events[-1].type == "room_finished", seconds=WITHIN)
            await asyncio.sleep(0.3)
    _assert_once(receiver)
    assert receiver.rejected == 0
    types = [e.type for e in receiver.events]
    assert types[0] == "room_started" and types[-1] == "room_finished", types
    assert types.count("participant_joined") == 2 and types.count("participant_left") == 2
    assert types.count("track_published") == 2
    names = [e.event["participant"]["displayName"] for e in receiver.events if e.type == "participant_joined"]
    assert sorted(names) == ["Guest", "Host"]
    for name in ("Host", "Guest"):
        mine = [e.type for e in receiver.events if e.event.get("participant", {}).get("displayName") == name]
        # Nothing about a participant before they joined; they leave after their tracks are gone.
        assert mine[0] == "participant_joined" and mine[-1] == "participant_left", mine
        assert mine.count("track_published") == mine.count("track_unpublished") == 1, mine
