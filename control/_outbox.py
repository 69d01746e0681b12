"""The webhook outbox: events are written in the transaction of the change they report, so a
change that rolls back produces no event and a crash loses none; the delivery workers
(``_delivery``) send them afterwards.

An event is stored once, with the exact JSON body every delivery of it sends (the signature
covers those bytes), and one delivery row per webhook that wants it. Nothing is written when no
webhook wants the event: without webhooks the outbox costs one small query per transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from google.protobuf import json_format
from sqlalchemy.ext.asyncio import AsyncSession

from parley.control.v1 import webhook_service_pb2 as webhook_pb

from ._domain import new_id, utcnow
from ._models import DeliveryState, WebhookDeliveryRow, WebhookEventRow
from ._repos import WebhookDeliveries, Webhooks


class OutboxSignal:
    """Wakes this process's delivery worker when a transaction has written events, so that they
    leave at once instead of at the worker's next poll (other replicas poll)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, seconds: float) -> None:
        """Returns when woken, or after ``seconds``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


def event_body(event: webhook_pb.WebhookEvent) -> str:
    """The JSON body of a delivery: the event's canonical proto3 JSON, compact, with fields at
    their default values written out (``"active": false``) so receivers need not know them."""
    fields = json_format.MessageToDict(event, always_print_fields_with_no_presence=True)
    return json.dumps(fields, separators=(",", ":"), sort_keys=True)


class Outbox:
    """Writes the events of one transaction. Use one per session."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._subscriptions: list[tuple[str, list[str]]] | None = None
        self._locked_rooms: set[str] = set()
        #: How many events this transaction wrote (to wake the worker after commit).
        self.written = 0

    async def add(self, event: webhook_pb.WebhookEvent, room_id: str) -> None:
        """Records ``event`` (its ``id`` is set here) for every webhook that wants it. Its
        retry period starts now, whenever the event happened."""
        if self._subscriptions is None:
            self._subscriptions = await Webhooks(self._session).subscriptions()
        targets = [webhook for webhook, types in self._subscriptions if not types or event.event in types]
        if not targets:
            return
        if room_id not in self._locked_rooms:
            await WebhookDeliveries(self._session).lock_room(room_id)
            self._locked_rooms.add(room_id)
        event.id = new_id()
        now = utcnow()
        row = WebhookEventRow(id=event.id, event=event.event, room_id=room_id, body=event_body(event), created_at=now)
        deliveries = [
            WebhookDeliveryRow(
                id=new_id(),
                webhook_id=webhook,
                event_row=row,
                event=event.event,
                room_id=room_id,
                state=DeliveryState.PENDING,
                attempts=0,
                created_at=now,
                retry_from=now,
                next_attempt_at=now,
                last_status_code=0,
                last_latency=0.0,
                last_error="",
            )
            for webhook in targets
        ]
        WebhookDeliveries(self._session).add_event(row, deliveries)
        self.written += 1
