"""What happens in meetings, told to control (``SfuReportService.ReportEvents``), which keeps
their history and sends webhooks.

The media path and signal handling never wait on control: ``emit`` stamps the event with the
node's next sequence number and appends it to a bounded buffer, nothing more. A sender task
sends the buffer in batches, drops what control acknowledged, and retries with exponential
backoff and jitter while control is away (re-sent events are applied once: control skips
sequence numbers it already applied)::

    emit() ──► buffer (bounded; oldest dropped when full) ──► sender ──ReportEvents──► control
                  ▲                                              │
                  └──────── acknowledged events removed ◄────────┘  applied_sequence

When the buffer overflows, the oldest events are dropped (``parley_sfu_report_dropped_total``)
and control, expecting one of them, answers FAILED_PRECONDITION naming the sequence it expects:
the events still held are renumbered from there, so the history misses the dropped events but
takes everything after them (the node keeps its id: a new one would make control end the
meetings this node still hosts)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
from collections import deque
from typing import TYPE_CHECKING, Any

import grpc

from parley.control.v1 import sfu_report_service_pb2 as pb
from parley.control.v1 import sfu_report_service_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from parley.control.v1.sfu_report_service_pb2_grpc import SfuReportServiceAsyncStub

log = logging.getLogger(__name__)

__all__ = ["REPORTS", "ReportTotals", "Reporter"]

#: Events per ``ReportEvents`` call (the contract allows 1000).
BATCH = 500
BACKOFF_MIN = 0.2
BACKOFF_MAX = 10.0
#: Seconds one call may take.
CALL_TIMEOUT = 5.0
#: Seconds ``aclose`` waits for the last events to be acknowledged.
FLUSH_TIMEOUT = 2.0
#: The contract's longest display name.
NAME_MAX = 200


class ReportTotals:
    """Since this process started, over every node in it (read by ``_metrics``)."""

    dropped: int = 0


REPORTS = ReportTotals()


class Reporter:
    """One node's reports to control. Off (``emit`` does nothing) unless ``enabled``; events
    emitted before ``start`` wait in the buffer."""

    def __init__(self, *, capacity: int = 10000, enabled: bool = False) -> None:
        self.enabled = enabled
        self.capacity = max(1, capacity)
        self.node = ""
        self.node_url = ""
        self._events: deque[pb.SfuEvent] = deque()
        self._next = 1
        self._dropping = False  # in a burst of drops (warned once per burst)
        self._limit = BATCH
        self._wake = asyncio.Event()
        self._hurry = asyncio.Event()  # closing: retry soon, control has little time left
        self._channel: grpc.aio.Channel | None = None
        self._stub: SfuReportServiceAsyncStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Events emitted and not yet acknowledged by control."""
        return len(self._events)

    def emit(self, room: str, meeting_sid: str, **event: Any) -> None:
        """Queues one event, e.g. ``emit(room.id, room.sid, room_started=pb.RoomStarted())``:
        synchronous and O(1), never waits on control."""
        if not self.enabled:
            return
        message = pb.SfuEvent(sequence=self._next, room=room, meeting_sid=meeting_sid, **event)
        message.time.GetCurrentTime()
        self._next += 1
        if len(self._events) >= self.capacity:
            self._events.popleft()
            REPORTS.dropped += 1
            if not self._dropping:
                self._dropping = True
                log.warning(
                    "control has not taken the node's events for a while: dropping the oldest (buffer of %d)",
                    self.capacity,
                )
        self._events.append(message)
        self._wake.set()

    # --- sending -------------------------------------------------------------------------

    def start(self, target: str, api_key: str, *, node: str, node_url: str) -> None:
        """Starts sending to control at ``target`` (``host:port``) with ``api_key``
        (``key.secret``, holding ``sfu:report``); call in the running loop."""
        self.enabled = True
        self.node, self.node_url = node, node_url
        # grpc's own reconnect backoff grows to 2 minutes: capped at ours, so that reports resume
        # within seconds of control coming back.
        options = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 10000)]
        self._channel = grpc.aio.insecure_channel(target, options=options)
        self._stub = pb_grpc.SfuReportServiceStub(self._channel)
        self._metadata = (("authorization", f"Bearer {api_key}"),) if api_key else ()
        self._task = asyncio.create_task(self._send_forever())
        log.info("reporting meeting events to control at %s as node %s", target, node)

    async def aclose(self, flush_timeout: float = FLUSH_TIMEOUT) -> None:
        """Stops reporting: waits up to ``flush_timeout`` seconds for control to acknowledge
        what is left (call it once rooms have closed: their last events go too)."""
        self.enabled = False
        task, self._task = self._task, None
        if task is not None:
            self._hurry.set()
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(flush_timeout):
                    while self._events and not task.done():
                        await asyncio.wait({task}, timeout=0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._events and self._channel is not None:
            log.warning("control did not take the node's last %d events before it stopped", len(self._events))
        if self._channel is not None:
            await self._channel.close()

    async def _send_forever(self) -> None:
        delay = BACKOFF_MIN
        failing = False
        while True:
            if not self._events:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._send_batch()
            except grpc.aio.AioRpcError as error:
                if self._recover(error):
                    continue
                if not failing:
                    log.warning("reporting to control failed (%s: %s); retrying", error.code().name, error.details())
                failing = True
                await self._sleep(random.uniform(delay / 2, delay))
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            if failing:
                log.info("reporting to control again")
            failing, delay = False, BACKOFF_MIN

    async def _send_batch(self) -> None:
        assert self._stub is not None
        batch = list(itertools.islice(self._events, self._limit))
        request = pb.ReportEventsRequest(node=self.node, node_url=self.node_url, events=batch)
        answer = await self._stub.ReportEvents(request, timeout=CALL_TIMEOUT, metadata=self._metadata)
        while self._events and self._events[0].sequence <= answer.applied_sequence:
            self._events.popleft()
        self._dropping = False
        self._limit = min(BATCH, self._limit * 2)

    def _recover(self, error: grpc.aio.AioRpcError) -> bool:
        """Handles what re-sending as is would not fix; True to send again at once."""
        code = error.code()
        if code == grpc.StatusCode.FAILED_PRECONDITION:
            expected = _expected_sequence(error.details() or "")
            return expected is not None and self._resync(expected)
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            # An event control refuses: halve the batch until it is alone, then drop it.
            if self._limit > 1:
                self._limit //= 2
            else:
                dropped = self._events.popleft()
                REPORTS.dropped += 1
                log.error("control refused event %s (%s); dropped", dropped.sequence, error.details())
            return True
        return False

    def _resync(self, expected: int) -> bool:
        """Control expects ``expected`` next: drop what it already has, or renumber what is
        held from there when the events in between were dropped here. False when nothing
        changed (then it is not a gap this node can fix; the sender backs off)."""
        events = self._events
        if not events or events[0].sequence == expected:
            return False
        if events[0].sequence < expected:  # applied already (an answer was lost)
            while events and events[0].sequence < expected:
                events.popleft()
        else:
            shift = events[0].sequence - expected
            log.warning("%d events dropped here are lost to control; renumbering the rest", shift)
            for event in events:
                event.sequence -= shift
        self._next = events[-1].sequence + 1 if events else expected
        return True

    async def _sleep(self, seconds: float) -> None:
        """Backs off, for less when closing (control has the flush time left, no more)."""
        if self._hurry.is_set():
            await asyncio.sleep(min(seconds, BACKOFF_MIN))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._hurry.wait(), seconds)


def _expected_sequence(details: str) -> int | None:
    """The sequence control expects, read from its FAILED_PRECONDITION message."""
    match = re.search(r"expect\w*\D*?(\d+)", details, re.IGNORECASE)
    if match is None:
        numbers = re.findall(r"\d+", details)
        return int(numbers[0]) if len(numbers) == 1 else None
    return int(match.group(1))
