"""What the egress service asks of control: join tokens for its recorders (``CreateJoinToken``
with the hidden recorder grant) and the reports that move recordings along
(``EgressReportService.ReportEgress``), both with this node's API key.

Reports are sent by one task: the newest state of each egress waits in ``pending`` (a newer
one replaces it), and every running egress is re-sent each ``interval`` as a heartbeat, since
control fails recordings whose egress goes quiet. While control is away the reporter retries
with backoff; a final state is kept until control has it."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta

from parley import Client, ParleyError
from parley.control.v1 import recording_service_pb2 as rec
from parley.control.v1 import recording_service_pb2_grpc as rec_grpc
from parley.control.v1 import room_service_pb2 as room_pb
from parley.egress.v1 import resources_pb2 as res

from . import _metrics as metrics
from ._waiting import wait_event

log = logging.getLogger(__name__)

#: Recording states that mean "stop recording": the recording ended without this egress.
RECORDING_OVER = frozenset(
    {
        rec.RECORDING_STATE_ABORTED,
        rec.RECORDING_STATE_FAILED,
        rec.RECORDING_STATE_FAILED_TO_START,
        rec.RECORDING_STATE_FAILED_TO_STOP,
    }
)
OnAnswer = Callable[[res.Egress, rec.ReportEgressResponse], Awaitable[None]]


class ControlLink:
    """This node's calls to control; ``aclose`` when done."""

    def __init__(self, control_target: str, api_key: str, *, interval: float, on_answer: OnAnswer) -> None:
        self._client = Client(control_target, bearer=api_key)
        self._reports = rec_grpc.EgressReportServiceStub(self._client.channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),)
        self._interval = interval
        self._on_answer = on_answer
        self._pending: dict[str, res.Egress] = {}
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # set whenever nothing is pending
        self._task: asyncio.Task[None] | None = None
        self.running: Callable[[], list[res.Egress]] = list

    async def join_grant(self, room: str, egress_id: str, ttl: float) -> room_pb.JoinGrant:
        """A join token for a recorder: hidden, subscribe-only, with the recorder grant."""
        grants = room_pb.JoinGrants(
            can_publish=False, can_subscribe=True, can_publish_data=False, hidden=True, recorder=True
        )
        return await self._client.rooms.create_join_token(
            room,
            identity=f"EG_{egress_id}",
            display_name="Recorder",
            grants=grants,
            ttl=timedelta(seconds=min(86400, int(ttl) + 3600)),
        )

    def report(self, egress: res.Egress) -> None:
        """Queues ``egress`` as it is now; the newest state of each egress wins."""
        snapshot = res.Egress()
        snapshot.CopyFrom(egress)
        self._pending[egress.name] = snapshot
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._send_forever())

    async def aclose(self, *, flush: float = 5.0) -> None:
        """Sends what is pending (for at most ``flush`` seconds), then stops."""
        if self._task is not None:
            drain = asyncio.ensure_future(self._drain())
            await asyncio.wait({drain}, timeout=flush)
            drain.cancel()
            self._task.cancel()
            # Not ``await self._task``: a cancelled ``wait_for`` inside it was seen to hang
            # (Python 3.11) and hold the node's shutdown for minutes.
            await asyncio.wait({self._task}, timeout=2.0)
        await self._client.aclose()

    async def _drain(self) -> None:
        while self._pending:
            self._idle.clear()
            await self._idle.wait()

    async def _send_forever(self) -> None:
        delay = 0.5
        while True:
            await wait_event(self._wake, self._interval)
            self._wake.clear()
            for egress in self.running():  # heartbeats
                self._pending.setdefault(egress.name, egress)
            while self._pending:
                name, egress = next(iter(self._pending.items()))
                try:
                    answer = await self._reports.ReportEgress(
                        rec.ReportEgressRequest(egress=egress), metadata=self._metadata, timeout=10
                    )
                except Exception as error:  # control away: keep it, retry later
                    metrics.REPORT_FAILURES.inc()
                    log.warning("cannot report %s to control (%s); retrying in %.1f s", name, error, delay)
                    await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, 30.0)
                    continue
                delay = 0.5
                if self._pending.get(name) is egress:
                    del self._pending[name]
                if not self._pending:
                    self._idle.set()
                try:
                    await self._on_answer(egress, answer)
                except ParleyError:  # pragma: no cover - the answer's handler logs its own
                    log.exception("handling control's answer for %s failed", name)
