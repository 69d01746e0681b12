"""Webhooks as resources: created, read, changed, deleted and their secrets rotated with an API
key holding ``webhooks:manage``; their delivery log and redelivery. Sending is ``_delivery``'s,
writing events the outbox's (``_outbox``)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from parley.server import decode_page_token, encode_page_token
from parley.server import page_size as page_size_of
from parley.server.db import Sessions

from ._auth import Principal
from ._domain import Page, UseCases, new_id, page_of, utcnow
from ._errors import InvalidArgument, NotFound, PermissionDenied
from ._models import DeliveryState, WebhookDeliveryRow, WebhookRow
from ._outbox import OutboxSignal
from ._repos import WebhookDeliveries, Webhooks
from ._settings import ControlSettings
from ._targets import TargetRefused, check_target, parse_networks

#: The scope of the API keys that manage webhooks.
MANAGE_SCOPE = "webhooks:manage"

_UPDATABLE = ("display_name", "url", "event_types")


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def require_webhook_manager(caller: Principal) -> None:
    caller.require_authenticated()
    if not caller.is_api_key:
        raise PermissionDenied(f"webhooks are managed with an API key holding {MANAGE_SCOPE}")
    caller.require_scope(MANAGE_SCOPE)


@dataclass(frozen=True)
class WebhookFields:
    """What a caller sets on a webhook."""

    display_name: str
    url: str
    event_types: Sequence[str]


class WebhookUseCases(UseCases):
    def __init__(self, settings: ControlSettings, sessions: Sessions, signal: OutboxSignal | None = None) -> None:
        super().__init__(settings, sessions)
        self._allowed = parse_networks(settings.webhook_allowed_networks)
        self._signal = signal or OutboxSignal()

    async def _check_url(self, url: str) -> None:
        try:
            await check_target(url, self._allowed)
        except TargetRefused as exc:
            raise InvalidArgument.field("webhook.url", str(exc)) from exc

    async def create_webhook(self, caller: Principal, fields: WebhookFields) -> tuple[WebhookRow, str]:
        require_webhook_manager(caller)
        await self._check_url(fields.url)
        now = utcnow()
        secret = _new_secret()
        row = WebhookRow(
            id=new_id(),
            display_name=fields.display_name.strip(),
            url=fields.url,
            event_types=list(fields.event_types),
            secret=secret,
            secret_version=1,
            consecutive_failures=0,
            paused_until=None,
            breaker_trips=0,
            created_at=now,
            updated_at=now,
        )
        async with self._writes.begin() as session:
            Webhooks(session).add(row)
        return row, secret

    async def get_webhook(self, caller: Principal, webhook_id: str) -> WebhookRow:
        require_webhook_manager(caller)
        async with self._reads() as session:
            return await self._webhook(session, webhook_id)

    async def _webhook(self, session: AsyncSession, webhook_id: str) -> WebhookRow:
        row = await Webhooks(session).get(webhook_id)
        if row is None:
            raise NotFound(f"webhook {webhook_id} not found")
        return row

    async def list_webhooks(self, caller: Principal, *, page_size: int, page_token: str) -> Page[WebhookRow]:
        require_webhook_manager(caller)
        size = page_size_of(page_size)
        async with self._reads() as session:
            rows = await Webhooks(session).page(after=decode_page_token(page_token, scope="webhooks"), limit=size + 1)
        return page_of(rows, size, "webhooks")

    async def update_webhook(
        self, caller: Principal, webhook_id: str, fields: WebhookFields, paths: Sequence[str]
    ) -> WebhookRow:
        require_webhook_manager(caller)
        for index, path in enumerate(paths):
            if path not in _UPDATABLE:
                raise InvalidArgument.field(f"update_mask.paths[{index}]", f"cannot change {path!r}")
        if "url" in paths:
            await self._check_url(fields.url)
        async with self._writes.begin() as session:
            row = await self._webhook(session, webhook_id)
            if "display_name" in paths:
                row.display_name = fields.display_name.strip()
            if "url" in paths:
                row.url = fields.url
            if "event_types" in paths:
                row.event_types = list(fields.event_types)
            row.updated_at = utcnow()
        return row

    async def delete_webhook(self, caller: Principal, webhook_id: str) -> None:
        """Deletes a webhook; its deliveries go with it."""
        require_webhook_manager(caller)
        async with self._writes.begin() as session:
            await Webhooks(session).delete(await self._webhook(session, webhook_id))

    async def rotate_secret(self, caller: Principal, webhook_id: str) -> tuple[WebhookRow, str]:
        require_webhook_manager(caller)
        secret = _new_secret()
        async with self._writes.begin() as session:
            row = await self._webhook(session, webhook_id)
            row.secret = secret
            row.secret_version += 1
            row.updated_at = utcnow()
        return row, secret

    # -- the delivery log -----------------------------------------------------------------

    async def list_deliveries(
        self,
        caller: Principal,
        webhook_id: str,
        *,
        state: DeliveryState | None,
        page_size: int,
        page_token: str,
    ) -> Page[WebhookDeliveryRow]:
        require_webhook_manager(caller)
        scope = f"webhook-deliveries|{webhook_id}|{state}"
        after = decode_page_token(page_token, scope=scope)
        size = page_size_of(page_size)
        async with self._reads() as session:
            await self._webhook(session, webhook_id)
            rows = await WebhookDeliveries(session).page(
                webhook_id, state=state, before_seq=int(after[1]) if after else None, limit=size + 1
            )
        if len(rows) <= size:
            return Page(rows, "")
        rows = rows[:size]
        return Page(rows, encode_page_token(rows[-1].created_at, str(rows[-1].seq), scope=scope))

    async def redeliver(self, caller: Principal, webhook_id: str, delivery_id: str) -> WebhookDeliveryRow:
        """Queues a delivery again as new: now, with a fresh retry period."""
        require_webhook_manager(caller)
        now = utcnow()
        async with self._writes.begin() as session:
            await self._webhook(session, webhook_id)
            row = await WebhookDeliveries(session).get(webhook_id, delivery_id)
            if row is None:
                raise NotFound(f"delivery {delivery_id} of webhook {webhook_id} not found")
            row.state = DeliveryState.PENDING
            row.retry_from = now
            row.next_attempt_at = now
            # An attempt in flight no longer owns it: its outcome is not recorded, and the
            # delivery is sent again.
            row.lease_until = None
            row.lease_token = None
        self._signal.wake()
        return row

    async def purge_log(self, *, now: datetime | None = None) -> int:
        """Deletes delivered and failed deliveries older than the log retention; returns how many."""
        cutoff = (now or utcnow()) - self.settings.webhook_log_retention
        async with self._writes.begin() as session:
            return await WebhookDeliveries(session).delete_finished_before(cutoff)
