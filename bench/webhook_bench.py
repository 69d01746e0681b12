"""Webhooks under load: events through the outbox to a receiver with one and two control
replicas, and what writing outbox rows costs the reports that carry joins.

Each scenario gets a fresh PostgreSQL database (created and dropped here), its API keys made as
an operator makes them (``python -m control keys create``: one with every scope, one with
``sfu:report``) and ``python -m control`` replicas as processes of their own
(``PARLEY_WEBHOOK_ALLOWED_NETWORKS=127.0.0.0/8``, so webhooks may target loopback). A
``parley.testing.WebhookReceiver`` runs in a process of its own too (it checks each delivery's
signature and stamps its arrival, ``received_at``, away from the load generator's event loop).
This process plays several SFU nodes: it calls ``SfuReportService.ReportEvents`` directly with
the ``sfu:report`` key, each node with its own id and consecutive sequence numbers and one call
in flight, over rooms created with ``client.rooms.create`` (each room belongs to one node). Each
room runs meetings one after the other: room_started, P × participant_joined, P ×
participant_left, room_finished; each of these reported events produces one webhook event.

1. **Delivery**, 1 then 2 replicas, one webhook for every event. With 2 replicas the nodes
   alternate between them (node i reports to replica i mod 2), and both replicas' delivery
   workers claim deliveries (``FOR UPDATE SKIP LOCKED``).

   - *saturated*: the nodes report as fast as they can for ``--seconds``, ``--batch`` events per
     call (as an SFU node batches a backlog); events/s is the events received over the time
     from the first report's start to the last receipt, the backlog drained: what delivery
     sustains, or the writes if they are slower (compare ``written/s``). Its latencies are
     mostly the backlog's;
   - *paced*: the nodes report one event per call at a fixed total rate (``--rate``, the same
     for 1 and 2 replicas), below what either sustains, so that latency is the pipeline's.

   Latency runs from the **start** of the ``ReportEvents`` call that wrote the event (its
   transaction commits before the call returns) to the receiver's 200 (``received_at``); from
   the call's **return** is shown too (the commit lies between the two; it can be negative: the
   worker is woken at commit and may deliver before the answer reaches the node). After each
   phase the bench checks that every event arrived exactly once (none missing, no event id
   twice) and in order per room, prints a line saying so, and exits with status 1 otherwise
   (printing the outbox's state and the replicas' logs).

2. **Join path**: ReportEvents calls per second, each carrying one participant_joined, from
   ``--join-nodes`` nodes at once, on one replica, with no webhook, one webhook, three webhooks
   (each delivered live by the same replica) and one webhook whose target is down (the rows are
   written but not sent: the circuit breaker pauses the webhook during the warm-up). Meetings are
   started before the webhooks exist and before the clock runs, so every timed call is one join.

The JoinRoom RPC (``client.rooms.join``) writes no event and no outbox row: participant_joined
comes from the SFU node's report once the participant's media connects, so the outbox's cost on
the join path is the report's (part 2); ``bench.control_bench`` measures JoinRoom itself.

Each phase also shows the CPU the control replicas and PostgreSQL's backends spent per event
(or call), how busy the machine was and how much of that was other processes' (figures taken
while other work runs on the machine move with it), how many database connections the replicas
opened, and how many backends waited on a row lock on average, with the statement that waited
most.

    python -m bench.webhook_bench [--seconds 4] [--rooms 64] [--nodes 8] [--batch 10] [--rate 25]
        [--participants 3] [--replicas 1,2] [--join-nodes 16] [--join-webhooks 0,1,3,down]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import psycopg
from google.protobuf import timestamp_pb2

from bench.control_bench import PG_ADMIN_URL, _database, _wait_serving
from parley import API_KEY_SCOPES, Client
from parley._loadtest import process_cpu_seconds
from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import sfu_report_service_pb2_grpc as report_grpc

if TYPE_CHECKING:
    from parley.control.v1.sfu_report_service_pb2_grpc import SfuReportServiceAsyncStub

#: How long the receiver may take to get the whole backlog of one phase.
DRAIN_TIMEOUT = 90.0
#: How long to wait, once the count is reached, for deliveries that should not come (repeats).
SETTLE_SECONDS = 0.3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _fail(message: str) -> NoReturn:
    print(f"\nFAILED: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine so far (Linux /proc/stat)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _cpu_of(pids: Iterable[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            found[pid] = process_cpu_seconds(pid)
    return found


class _Meter:
    """What one phase cost: CPU of the control replicas, of the PostgreSQL backends serving the
    bench's database (sampled every 50 ms, so that backends which exit mid-phase count too) and
    of everything else on the machine (other processes share it: noise); how many backends were
    started (connections opened) and how many waited on a lock, with the statements that waited
    most."""

    def __init__(self, replicas: Sequence[_Replica], database_url: str, helper_pids: Sequence[int]) -> None:
        self._controls = [r.pid for r in replicas]
        self._helpers = [os.getpid(), *helper_pids]
        self._database = database_url.rsplit("/", 1)[1]
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self._samples = 0
        self._waiting = 0
        self.waits: Counter[str] = Counter()
        self._first: dict[int, float] = {}  # backend pid: CPU seconds when the phase began
        self._latest: dict[int, float] = {}  # backend pid: CPU seconds when last seen

    async def _backends(self) -> list[tuple[int, str | None, str]]:
        """(pid, wait event type, statement) of the database's backends."""
        assert self._conn is not None
        cursor = await self._conn.execute(
            "SELECT pid, wait_event_type, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) "
            "FROM pg_stat_activity WHERE datname = %s",
            (self._database,),
        )
        return [(int(pid), kind, text) for pid, kind, text in await cursor.fetchall()]

    async def _sample(self) -> None:
        while True:
            backends = await self._backends()
            self._latest.update(_cpu_of(pid for pid, _, _ in backends))
            waiting = [text for _, kind, text in backends if kind == "Lock"]
            self._samples += 1
            self._waiting += len(waiting)
            self.waits.update(waiting)
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> _Meter:
        self._conn = await psycopg.AsyncConnection.connect(PG_ADMIN_URL, autocommit=True)
        self._first = _cpu_of(pid for pid, _, _ in await self._backends())
        self._start_controls = sum(_cpu_of(self._controls).values())
        self._start_helpers = sum(_cpu_of(self._helpers).values())
        self._start_jiffies = _busy_jiffies()
        self._sampler = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._conn is not None
        assert self._sampler is not None
        self._sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sampler
        self._latest.update(_cpu_of(pid for pid, _, _ in await self._backends()))
        await self._conn.close()
        busy, total = _busy_jiffies()
        busy, total = busy - self._start_jiffies[0], total - self._start_jiffies[1]
        #: CPU seconds of the control replicas and of the database's backends.
        self.control = sum(_cpu_of(self._controls).values()) - self._start_controls
        self.database = sum(cpu - self._first.get(pid, 0.0) for pid, cpu in self._latest.items())
        #: Backends started during the phase (connections the replicas opened).
        self.connections = len(self._latest.keys() - self._first.keys())
        helpers = sum(_cpu_of(self._helpers).values()) - self._start_helpers
        tick = os.sysconf("SC_CLK_TCK")
        #: Fractions of the machine's CPUs: busy, and busy with other processes than the bench's.
        self.busy = busy / max(1, total)
        self.others = max(0.0, (busy - (self.control + self.database + helpers) * tick) / max(1, total))

    @property
    def lock_waiting(self) -> float:
        """Backends of the bench's database waiting on a lock, on average."""
        return self._waiting / max(1, self._samples)


# -- processes ------------------------------------------------------------------------------


def _create_key(database_url: str, name: str, scopes: Sequence[str]) -> str:
    """``python -m control keys create`` on the database (which it migrates); the bearer."""
    command = [sys.executable, "-m", "control", "keys", "create", "--name", name]
    for scope in scopes:
        command += ["--scope", scope]
    done = subprocess.run(
        command,
        env={**os.environ, "PARLEY_DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    printed = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    if done.returncode or not {"PARLEY_API_KEY", "PARLEY_API_SECRET"} <= printed.keys():
        _fail(f"`python -m control keys create` exited {done.returncode}:\n{done.stderr[-3000:]}")
    return f"{printed['PARLEY_API_KEY']}.{printed['PARLEY_API_SECRET']}"


@dataclass(frozen=True)
class _Replica:
    address: str
    pid: int
    log: Path


@contextmanager
def _controls(database_url: str, count: int, folder: Path) -> Iterator[list[_Replica]]:
    """``count`` replicas of ``python -m control`` on one database, each on a free port; their
    logs go to files in ``folder`` (shown when the bench fails)."""
    token_secret = secrets.token_urlsafe(40)  # shared, as replicas of one deployment share it
    folder.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        replicas = []
        for index in range(count):
            address = f"127.0.0.1:{_free_port()}"
            env = {
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "PARLEY_DATABASE_URL": database_url,
                "PARLEY_TOKEN_SECRET": token_secret,
                "PARLEY_GRPC_ADDRESS": address,
                # Metrics on, as in production, on a free port.
                "PARLEY_METRICS_ADDRESS": "127.0.0.1:0",
                # The receiver listens on loopback.
                "PARLEY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
            }
            log = folder / f"control-{index}.log"
            with log.open("wb") as output:  # the child keeps its own descriptor
                process = stack.enter_context(
                    subprocess.Popen(
                        [sys.executable, "-m", "control"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                    )
                )
            stack.callback(_stop, process)
            replicas.append(_Replica(address, process.pid, log))
        yield replicas


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _log_tails(replicas: Sequence[_Replica]) -> str:
    parts = []
    for replica in replicas:
        text = replica.log.read_bytes()[-3000:].decode(errors="replace")
        parts.append(f"--- end of {replica.log.name} ---\n{text}")
    return "\n".join(parts)


def _log_warnings(replicas: Sequence[_Replica]) -> list[str]:
    """The WARNING / ERROR lines of the replicas' logs (minus the expected loopback notice)."""
    found = []
    for replica in replicas:
        for line in replica.log.read_text(errors="replace").splitlines():
            if ("WARNING" in line or "ERROR" in line or "Traceback" in line) and "may target" not in line:
                found.append(f"{replica.log.name}: {line[:300]}")
    return found


class _Receiver:
    """A ``WebhookReceiver`` in a child process (``python -m bench.webhook_bench --receiver``),
    spoken to over its stdin / stdout, one JSON line each way."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self._process = process
        self.pid = process.pid
        self.url = url

    @classmethod
    @asynccontextmanager
    async def start(cls) -> AsyncIterator[_Receiver]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.webhook_bench",
            "--receiver",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 28,
        )
        try:
            assert process.stdout is not None
            hello = json.loads(await process.stdout.readline())
            yield cls(process, hello["url"])
        finally:
            if process.returncode is None:
                process.terminate()
                await process.wait()

    async def _ask(self, **command: Any) -> dict[str, Any]:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write(json.dumps(command).encode() + b"\n")
        await self._process.stdin.drain()
        line = await self._process.stdout.readline()
        if not line:
            _fail("the webhook receiver process exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def add_secret(self, key_id: str, secret: str) -> None:
        await self._ask(op="secret", key_id=key_id, secret=secret)

    async def count(self) -> dict[str, int]:
        return await self._ask(op="count")

    async def take(self) -> list[dict[str, Any]]:
        """The deliveries accepted since the last ``take``, in arrival order."""
        events: list[dict[str, Any]] = (await self._ask(op="take"))["events"]
        return events


async def _serve_receiver() -> None:
    """The receiver process: answers ``secret``, ``count`` and ``take`` commands on stdin."""
    from parley.testing import WebhookReceiver

    async with WebhookReceiver() as receiver:
        print(json.dumps({"url": receiver.url}), flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            command = json.loads(line)
            reply: dict[str, Any] = {}
            if command["op"] == "secret":
                receiver.secrets[command["key_id"]] = command["secret"]
            elif command["op"] == "count":
                reply = {"count": len(receiver.events), "rejected": receiver.rejected, "calls": receiver.calls}
            elif command["op"] == "take":
                events, receiver.events = receiver.events, []
                reply = {
                    "events": [
                        {
                            "id": e.id,
                            "event": e.type,
                            "room": e.event.get("room", ""),
                            "identity": e.event.get("participant", {}).get("identity", ""),
                            "at": e.received_at,
                        }
                        for e in events
                    ]
                }
            print(json.dumps(reply), flush=True)


# -- fake SFU nodes -------------------------------------------------------------------------


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class _Room:
    """One room on one node, running meetings one after the other; what webhook events it has
    caused, in order, and when each was reported."""

    id: str
    index: int
    participants: int
    meeting: int = 0
    step: int = 0
    #: (event, participant identity) of each webhook event it should cause, in order.
    expected: list[tuple[str, str]] = field(default_factory=list)
    #: (call start, call return), time.time(), of the report behind each expected event.
    reported: list[tuple[float, float]] = field(default_factory=list)
    #: How many of ``expected`` have been received (and checked).
    received: int = 0

    def next_event(self) -> tuple[report_pb.SfuEvent, tuple[str, str]]:
        """The next thing that happens in this room, and the webhook event it causes."""
        p = self.participants
        sid = f"RM_{self.index}_{self.meeting}"
        event = report_pb.SfuEvent(time=_now(), room=self.id, meeting_sid=sid)
        step = self.step
        if step == 0:
            event.room_started.SetInParent()
            caused = ("room_started", "")
        elif step <= p:
            identity = f"guest-{self.meeting}-{step}"
            event.participant_joined.identity = identity
            event.participant_joined.participant_sid = f"PA_{self.meeting}_{step}"
            event.participant_joined.display_name = f"Guest {step}"
            caused = ("participant_joined", identity)
        elif step <= 2 * p:
            k = step - p
            identity = f"guest-{self.meeting}-{k}"
            event.participant_left.identity = identity
            event.participant_left.participant_sid = f"PA_{self.meeting}_{k}"
            caused = ("participant_left", identity)
        else:
            event.room_finished.SetInParent()
            caused = ("room_finished", "")
        self.step += 1
        if self.step > 2 * p + 1:
            self.step, self.meeting = 0, self.meeting + 1
        return event, caused

    def join_event(self) -> report_pb.SfuEvent:
        """One more participant joins the current meeting (part 2: nothing is expected)."""
        self.step += 1
        identity = f"guest-{self.meeting}-{self.step}"
        event = report_pb.SfuEvent(time=_now(), room=self.id, meeting_sid=f"RM_{self.index}_{self.meeting}")
        event.participant_joined.identity = identity
        event.participant_joined.participant_sid = f"PA_{self.meeting}_{self.step}"
        event.participant_joined.display_name = "Guest"
        return event


@dataclass
class _Node:
    """A fake SFU node: its own id, URL and sequence, the rooms it hosts, a channel to one
    replica."""

    id: str
    url: str
    channel: grpc.aio.Channel
    stub: SfuReportServiceAsyncStub
    metadata: tuple[tuple[str, str], ...]
    rooms: list[_Room]
    sequence: int = 0
    turn: int = 0

    async def report(self, events: Sequence[report_pb.SfuEvent]) -> tuple[float, float]:
        """Reports ``events`` in one call; (call start, call return) by time.time()."""
        for event in events:
            self.sequence += 1
            event.sequence = self.sequence
        request = report_pb.ReportEventsRequest(node=self.id, node_url=self.url, events=events)
        started = time.time()
        try:
            answer = await self.stub.ReportEvents(request, metadata=self.metadata, timeout=30)
        except grpc.aio.AioRpcError as error:
            _fail(f"ReportEvents from {self.id} failed: {error.code().name}: {error.details()}")
        returned = time.time()
        if answer.applied_sequence != self.sequence:
            _fail(f"node {self.id}: applied sequence {answer.applied_sequence}, expected {self.sequence}")
        return started, returned

    def next_room(self) -> _Room:
        room = self.rooms[self.turn % len(self.rooms)]
        self.turn += 1
        return room


async def _make_nodes(
    replicas: Sequence[_Replica], report_key: str, rooms: Sequence[_Room], count: int, prefix: str
) -> list[_Node]:
    """``count`` nodes, node i reporting to replica i mod len(replicas); rooms dealt out to them
    in turn."""
    nodes = []
    for index in range(count):
        channel = grpc.aio.insecure_channel(replicas[index % len(replicas)].address)
        nodes.append(
            _Node(
                id=f"{prefix}-{index}-{uuid.uuid4().hex[:8]}",
                url=f"grpc://{prefix}-{index}.bench.invalid:7880",
                channel=channel,
                stub=report_grpc.SfuReportServiceStub(channel),
                metadata=(("authorization", f"Bearer {report_key}"),),
                rooms=list(rooms[index::count]),
            )
        )
    return nodes


async def _close_nodes(nodes: Sequence[_Node]) -> None:
    for node in nodes:
        await node.channel.close()


async def _drive_meetings(
    nodes: Sequence[_Node], *, seconds: float, rate: float = 0.0, batch: int = 1
) -> tuple[int, int, float, float]:
    """Every node reports its rooms' next events, ``batch`` per call, one call at a time, for
    ``seconds``: as fast as it can, or at ``rate`` events/s over all nodes. Returns (calls,
    events, first call's start, last call's return)."""
    per_node = rate / len(nodes) / batch if rate else 0.0  # calls/s of each node
    begin = time.perf_counter()
    stop_at = begin + seconds
    calls = events = 0
    first, last = float("inf"), 0.0

    async def run(node: _Node, offset: float) -> None:
        nonlocal calls, events, first, last
        for k in itertools.count():
            if per_node:
                due = begin + offset + k / per_node
                if due >= stop_at:
                    return
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            elif time.perf_counter() >= stop_at:
                return
            rooms = [node.next_room() for _ in range(batch)]
            happened = [room.next_event() for room in rooms]
            started, returned = await node.report([event for event, _ in happened])
            for room, (_, caused) in zip(rooms, happened, strict=True):
                room.expected.append(caused)
                room.reported.append((started, returned))
            calls += 1
            events += batch
            first, last = min(first, started), max(last, returned)

    # Paced nodes start spread over one interval, not all at once.
    await asyncio.gather(*(run(node, (i / len(nodes)) / per_node if per_node else 0.0) for i, node in enumerate(nodes)))
    return calls, events, first, last


# -- part 1: delivery -----------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    """What a phase cost, per event (or call) where it says so."""

    control_ms: float  # control replicas' CPU, all of them, per event
    database_ms: float  # the PostgreSQL backends' CPU per event
    busy: float  # the machine's CPUs, fraction busy
    others: float  # ...of which with processes other than the bench's (other work on the machine)
    lock_waiting: float  # backends waiting on a lock, on average
    top_wait: str  # the statement that waited most often
    connections: int  # database connections opened during the phase

    @classmethod
    def of(cls, meter: _Meter, events: int) -> Costs:
        top = meter.waits.most_common(1)
        return cls(
            control_ms=meter.control * 1000 / max(1, events),
            database_ms=meter.database * 1000 / max(1, events),
            busy=meter.busy,
            others=meter.others,
            lock_waiting=meter.lock_waiting,
            top_wait=f"{top[0][0]!r} ({top[0][1]} samples)" if top else "",
            connections=meter.connections,
        )


@dataclass(frozen=True)
class DeliveryResult:
    replicas: int
    mode: str
    events: int
    write_rate: float  # events reported per second while the nodes reported
    delivered_rate: float  # events/s, first report's start to last receipt
    latency_start_ms: list[float]
    latency_return_ms: list[float]
    drain_s: float  # last report's return to last receipt
    costs: Costs


def _outbox_state(database_url: str) -> str:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT state, count(*), max(attempts), count(lease_until) FROM webhook_deliveries GROUP BY state"
        ).fetchall()
        errors = conn.execute(
            "SELECT last_error, count(*) FROM webhook_deliveries WHERE last_error <> '' GROUP BY last_error LIMIT 5"
        ).fetchall()
        hooks = conn.execute("SELECT id, consecutive_failures, paused_until FROM webhooks").fetchall()
    return f"deliveries (state, count, max attempts, leased): {rows}; errors: {errors}; webhooks: {hooks}"


async def _collect(
    receiver: _Receiver, rooms: Sequence[_Room], database_url: str, replicas: Sequence[_Replica]
) -> list[tuple[_Room, int, dict[str, Any]]]:
    """Waits until the receiver holds every expected event, then checks that each arrived exactly
    once and in order per room; returns (room, index in its expected list, received event) of the
    new ones."""
    total = sum(len(room.expected) - room.received for room in rooms)
    deadline = time.monotonic() + DRAIN_TIMEOUT
    while (answer := await receiver.count())["count"] < total:
        if answer["rejected"]:
            _fail(f"the receiver refused {answer['rejected']} deliveries (bad signature or content type)")
        if time.monotonic() > deadline:
            _fail(
                f"only {answer['count']} of {total} events arrived within {DRAIN_TIMEOUT:.0f} s\n"
                f"{_outbox_state(database_url)}\n{_log_tails(replicas)}"
            )
        await asyncio.sleep(0.02)
    await asyncio.sleep(SETTLE_SECONDS)
    received = await receiver.take()
    ids = Counter(e["id"] for e in received)
    repeated = [event_id for event_id, n in ids.items() if n > 1]
    if repeated:
        _fail(f"{len(repeated)} events arrived more than once, e.g. {repeated[:3]}")
    if len(received) != total:
        _fail(f"{len(received)} events arrived, {total} expected")
    by_room: dict[str, list[dict[str, Any]]] = {}
    for event in received:
        by_room.setdefault(event["room"].removeprefix("rooms/"), []).append(event)
    matched = []
    for room in rooms:
        got = by_room.pop(room.id, [])
        want = room.expected[room.received :]
        if [(e["event"], e["identity"]) for e in got] != want:
            for offset, (event, wanted) in enumerate(itertools.zip_longest(got, want)):
                if event is None or (event["event"], event["identity"]) != wanted:
                    _fail(
                        f"room {room.id}: event {room.received + offset} arrived as "
                        f"{None if event is None else (event['event'], event['identity'])}, expected {wanted} "
                        f"(received {len(got)}, expected {len(want)})"
                    )
        matched += [(room, room.received + i, event) for i, event in enumerate(got)]
        room.received += len(got)
    if by_room:
        _fail(f"events arrived for unknown rooms: {sorted(by_room)[:3]}")
    return matched


@dataclass(frozen=True)
class _Setup:
    """One scenario's database, replicas, rooms, nodes and receiver."""

    database_url: str
    replicas: list[_Replica]
    rooms: list[_Room]
    nodes: list[_Node]
    receiver: _Receiver

    def meter(self) -> _Meter:
        return _Meter(self.replicas, self.database_url, [self.receiver.pid])


async def _delivery_phase(setup: _Setup, mode: str, *, seconds: float, rate: float, batch: int) -> DeliveryResult:
    async with setup.meter() as meter:
        _calls, events, first, last = await _drive_meetings(setup.nodes, seconds=seconds, rate=rate, batch=batch)
        matched = await _collect(setup.receiver, setup.rooms, setup.database_url, setup.replicas)
    last_receipt = max(event["at"] for _, _, event in matched)
    from_start, from_return = [], []
    for room, index, event in matched:
        started, returned = room.reported[index]
        from_start.append((event["at"] - started) * 1000)
        from_return.append((event["at"] - returned) * 1000)
    result = DeliveryResult(
        replicas=len(setup.replicas),
        mode=mode,
        events=len(matched),
        write_rate=events / (last - first),
        delivered_rate=len(matched) / (last_receipt - first),
        latency_start_ms=from_start,
        latency_return_ms=from_return,
        drain_s=last_receipt - last,
        costs=Costs.of(meter, len(matched)),
    )
    print(
        f"  {len(setup.replicas)} replica(s), {mode}: all {result.events} events arrived exactly once and in order "
        f"per room ({len({room.id for room, _, _ in matched})} rooms); {result.delivered_rate:.0f} events/s, "
        f"p50 {statistics.median(from_start):.1f} ms",
        file=sys.stderr,
        flush=True,
    )
    return result


@asynccontextmanager
async def _scenario(
    replica_count: int,
    receiver: _Receiver,
    args: argparse.Namespace,
    folder: Path,
    *,
    name: str,
    nodes: int,
    participants: int,
) -> AsyncIterator[tuple[_Setup, Client]]:
    """A fresh database, its keys, ``replica_count`` replicas, ``args.rooms`` rooms and
    ``nodes`` fake SFU nodes; yields them with a client holding every scope."""
    with _database("postgresql") as url:
        admin_key = _create_key(url, "bench admin", API_KEY_SCOPES)
        report_key = _create_key(url, "bench sfu", ["sfu:report"])
        with _controls(url, replica_count, folder / name) as replicas:
            await asyncio.gather(*(_wait_serving(r.address) for r in replicas))
            async with Client(replicas[0].address, bearer=admin_key) as client:
                created = await asyncio.gather(
                    *(client.rooms.create(display_name=f"bench room {i}") for i in range(args.rooms))
                )
                rooms = [_Room(room.name.removeprefix("rooms/"), i, participants) for i, room in enumerate(created)]
                fake_nodes = await _make_nodes(replicas, report_key, rooms, nodes, name)
                try:
                    yield _Setup(url, replicas, rooms, fake_nodes, receiver), client
                finally:
                    await _close_nodes(fake_nodes)
            warnings = _log_warnings(replicas)
            for warning in warnings[:3]:
                print(f"  {name} log: {warning}", file=sys.stderr)
            if len(warnings) > 3:
                print(f"  {name} log: ... and {len(warnings) - 3} more warnings", file=sys.stderr)


async def _bench_delivery(
    replica_count: int, receiver: _Receiver, args: argparse.Namespace, folder: Path
) -> list[DeliveryResult]:
    async with _scenario(
        replica_count,
        receiver,
        args,
        folder,
        name=f"delivery-{replica_count}",
        nodes=args.nodes,
        participants=args.participants,
    ) as (setup, client):
        webhook = await client.webhooks.create(receiver.url, display_name="bench")
        await receiver.add_secret(webhook.webhook.signing_key_id, webhook.secret)
        # Warm up (connections, caches, each node's first report), checked too.
        await _drive_meetings(setup.nodes, seconds=min(1.0, args.seconds / 4))
        await _collect(receiver, setup.rooms, setup.database_url, setup.replicas)
        saturated = await _delivery_phase(setup, "saturated", seconds=args.seconds, rate=0.0, batch=args.batch)
        paced = await _delivery_phase(setup, f"paced {args.rate:g}/s", seconds=args.seconds, rate=args.rate, batch=1)
    return [saturated, paced]


# -- part 2: the join path ------------------------------------------------------------------


@dataclass(frozen=True)
class JoinResult:
    webhooks: str
    calls: int
    seconds: float
    latencies_ms: list[float]
    sent: int  # deliveries the receiver accepted during the timed window
    costs: Costs

    @property
    def rate(self) -> float:
        return self.calls / self.seconds


async def _drive_joins(nodes: Sequence[_Node], seconds: float) -> tuple[int, list[float]]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def run(node: _Node) -> None:
        while time.perf_counter() < stop_at:
            started, returned = await node.report([node.next_room().join_event()])
            latencies.append((returned - started) * 1000)

    await asyncio.gather(*(run(node) for node in nodes))
    return len(latencies), latencies


async def _bench_joins(variant: str, receiver: _Receiver, args: argparse.Namespace, folder: Path) -> JoinResult:
    scenario = _scenario(1, receiver, args, folder, name=f"joins-{variant}", nodes=args.join_nodes, participants=0)
    async with scenario as (setup, client):
        # Every room's meeting starts before any webhook exists.
        await asyncio.gather(*(node.report([room.next_event()[0] for room in node.rooms]) for node in setup.nodes))
        count = 0 if variant == "0" else 1 if variant == "down" else int(variant)
        target = f"http://127.0.0.1:{_free_port()}/webhook" if variant == "down" else receiver.url
        for index in range(count):
            webhook = await client.webhooks.create(target, display_name=f"bench {index}")
            await receiver.add_secret(webhook.webhook.signing_key_id, webhook.secret)
        await _drive_joins(setup.nodes, min(1.0, args.seconds / 4))  # warm up
        await receiver.take()
        async with setup.meter() as meter:
            calls, latencies = await _drive_joins(setup.nodes, args.seconds)
        sent = len(await receiver.take())
        if variant == "down":
            with psycopg.connect(setup.database_url) as conn:
                paused = conn.execute("SELECT count(*) FROM webhooks WHERE paused_until IS NOT NULL").fetchone()
            if not paused or paused[0] != 1:
                print("  note: the webhook whose target is down was not paused", file=sys.stderr)
    label = {"0": "none", "1": "1 webhook", "down": "1, target down"}.get(variant, f"{variant} webhooks")
    result = JoinResult(label, calls, args.seconds, latencies, sent, Costs.of(meter, calls))
    print(f"  joins, {label}: {result.rate:.0f} calls/s", file=sys.stderr, flush=True)
    return result


# -- main -----------------------------------------------------------------------------------


async def _bench(args: argparse.Namespace) -> tuple[list[DeliveryResult], list[JoinResult]]:
    deliveries: list[DeliveryResult] = []
    joins: list[JoinResult] = []
    with TemporaryDirectory(prefix="parley-webhook-bench-") as tmp:
        async with _Receiver.start() as receiver:
            for count in [int(x) for x in args.replicas.split(",") if x]:
                deliveries += await _bench_delivery(count, receiver, args, Path(tmp))
            for variant in [x for x in args.join_webhooks.split(",") if x]:
                joins.append(await _bench_joins(variant, receiver, args, Path(tmp)))
    return deliveries, joins


def _costs_header() -> str:
    return f"{'ctl ms':>7}{'pg ms':>7}{'busy':>6}{'other':>6}{'lockw':>6}{'conns':>6}"


def _costs_cells(costs: Costs) -> str:
    return (
        f"{costs.control_ms:>7.2f}{costs.database_ms:>7.2f}{costs.busy:>6.0%}{costs.others:>6.0%}"
        f"{costs.lock_waiting:>6.2f}{costs.connections:>6}"
    )


def _print(args: argparse.Namespace, deliveries: Sequence[DeliveryResult], joins: Sequence[JoinResult]) -> None:
    print(
        f"\nwebhooks on PostgreSQL, {args.rooms} rooms, {args.seconds:g} s of reports per phase, {os.cpu_count()} "
        "CPUs shared by PostgreSQL, the control replicas, the receiver and the load generator.\n"
        "ctl ms / pg ms: CPU of the control replicas / of PostgreSQL's backends per event (part 1) or call "
        "(part 2); busy: the machine's CPUs; other: busy with processes outside the bench; lockw: backends "
        "waiting on a lock, on average; conns: database connections opened during the phase"
    )
    if deliveries:
        print(
            f"\n1. events through the outbox to the receiver, one webhook: {args.nodes} fake SFU nodes, "
            f"{args.batch} events per ReportEvents call when saturated, 1 when paced; meetings of "
            f"{args.participants} participants. events/s: first report's start to last receipt. Latency: from the "
            "start of the ReportEvents call (its transaction commits before it returns) to the receiver's 200; "
            "'ret': from the call's return"
        )
        print(
            f"{'replicas':<9}{'phase':<12}{'events':>7}{'written/s':>10}{'events/s':>9}{'p50 ms':>8}{'p99 ms':>8}"
            f"{'p50 ret':>8}{'p99 ret':>8}{'drain s':>8}" + _costs_header()
        )
        for r in deliveries:
            print(
                f"{r.replicas:<9}{r.mode:<12}{r.events:>7}{r.write_rate:>10.0f}{r.delivered_rate:>9.0f}"
                f"{statistics.median(r.latency_start_ms):>8.1f}{_percentile(r.latency_start_ms, 0.99):>8.1f}"
                f"{statistics.median(r.latency_return_ms):>8.1f}{_percentile(r.latency_return_ms, 0.99):>8.1f}"
                f"{r.drain_s:>8.2f}" + _costs_cells(r.costs)
            )
        by_key = {(r.replicas, r.mode.split()[0]): r for r in deliveries}
        if (1, "saturated") in by_key and (2, "saturated") in by_key:
            one, two = by_key[1, "saturated"], by_key[2, "saturated"]
            print(
                f"\n2 replicas / 1 replica, saturated: events/s {two.delivered_rate / one.delivered_rate:.2f}x, "
                f"written/s {two.write_rate / one.write_rate:.2f}x, control CPU per event "
                f"{two.costs.control_ms / one.costs.control_ms:.2f}x"
            )
            one, two = by_key[1, "paced"], by_key[2, "paced"]
            print(
                f"2 replicas / 1 replica, paced at the same rate: p50 latency "
                f"{statistics.median(two.latency_start_ms) / statistics.median(one.latency_start_ms):.2f}x, "
                f"p99 {_percentile(two.latency_start_ms, 0.99) / _percentile(one.latency_start_ms, 0.99):.2f}x, "
                f"control CPU per event {two.costs.control_ms / one.costs.control_ms:.2f}x"
            )
        for r in deliveries:
            if r.costs.top_wait:
                print(f"  lock waits, {r.replicas} replica(s) {r.mode}: most often {r.costs.top_wait}")
    if joins:
        print(
            f"\n2. the join path: ReportEvents calls/s, each one participant_joined, {args.join_nodes} nodes with a "
            "call in flight each, one replica; 'sent': deliveries the receiver accepted in the same window"
        )
        print(f"{'webhooks':<16}{'calls/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'sent':>7}{'vs none':>9}" + _costs_header())
        baseline = next((j.rate for j in joins if j.webhooks == "none"), None)
        for j in joins:
            ratio = f"{j.rate / baseline:>8.2f}x" if baseline else f"{'-':>9}"
            print(
                f"{j.webhooks:<16}{j.rate:>8.0f}{statistics.median(j.latencies_ms):>8.1f}"
                f"{_percentile(j.latencies_ms, 0.99):>8.1f}{j.sent:>7}{ratio}" + _costs_cells(j.costs)
            )
        none = next((j for j in joins if j.webhooks == "none"), None)
        if none is not None:
            for j in joins:
                if j is not none:
                    print(
                        f"{j.webhooks} / none: calls/s {j.rate / none.rate:.2f}x, control CPU per call "
                        f"{j.costs.control_ms / none.costs.control_ms:.2f}x, PostgreSQL CPU per call "
                        f"{j.costs.database_ms / none.costs.database_ms:.2f}x"
                    )
        for j in joins:
            if j.costs.top_wait:
                print(f"  lock waits, {j.webhooks}: most often {j.costs.top_wait}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="reporting time per phase")
    parser.add_argument("--rooms", type=int, default=64, help="rooms the events are spread over")
    parser.add_argument("--nodes", type=int, default=8, help="fake SFU nodes reporting meetings (part 1)")
    parser.add_argument("--participants", type=int, default=3, help="participants per meeting (part 1)")
    parser.add_argument("--batch", type=int, default=10, help="events per ReportEvents call, saturated (part 1)")
    parser.add_argument("--rate", type=float, default=25.0, help="events/s of the paced phase, one per call (part 1)")
    parser.add_argument("--replicas", default="1,2", help="control replicas of each delivery run (part 1)")
    parser.add_argument("--join-nodes", type=int, default=16, help="fake SFU nodes reporting joins (part 2)")
    parser.add_argument(
        "--join-webhooks", default="0,1,3,down", help="webhooks of each join run (part 2); down: 1, unreachable"
    )
    parser.add_argument("--receiver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.receiver:
        asyncio.run(_serve_receiver())
        return
    started = time.monotonic()
    deliveries, joins = asyncio.run(_bench(args))
    _print(args, deliveries, joins)
    print(f"\n(the bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
