"""Webhook delivery workers: every control replica runs one; they share the work through the
database.

A worker claims due deliveries (``WebhookDeliveries.claim``: ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so two replicas never take the same row), leases them, POSTs each signed event and
records the outcome. Only the oldest pending delivery of each (webhook, room) is ever claimable,
so a room's events reach a webhook in order, and a failing one holds back the room's later
events until it succeeds or is given up on. Failures are retried with exponential backoff and
jitter until ``webhook_retry_for`` has passed since the event; a webhook that fails
``webhook_breaker_failures`` times in a row is paused (the circuit breaker) instead of being
hammered. A worker that dies mid-delivery leaves a lease that expires, and the delivery is sent
again: delivery is at least once, and receivers de-duplicate by event id.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from prometheus_client import Counter, Histogram

from parley import WEBHOOK_CONTENT_TYPE, sign_webhook
from parley.server.db import Sessions

from ._domain import utcnow
from ._models import DeliveryState
from ._outbox import OutboxSignal
from ._repos import Claimed, Outcome, WebhookDeliveries, Webhooks
from ._settings import ControlSettings
from ._targets import TargetRefused, check_target, parse_networks

log = logging.getLogger(__name__)
# httpx logs every request at INFO; the delivery log (ListWebhookDeliveries) and the metrics
# below say what happened to each delivery.
logging.getLogger("httpx").setLevel(logging.WARNING)

ATTEMPTS = Counter(
    "parley_webhook_attempts", "Webhook delivery attempts, by outcome (delivered, failed, gave_up).", ("outcome",)
)
ATTEMPT_SECONDS = Histogram(
    "parley_webhook_attempt_duration_seconds",
    "Time from sending a webhook to its answer (or failure).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
DELIVERY_LAG = Histogram(
    "parley_webhook_delivery_lag_seconds",
    "Time from an event being written to its delivery being accepted.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600, 86400),
)

#: How long a claim holds a delivery beyond the request timeout (time to record the outcome).
#: A replica that dies mid-delivery delays that room's events by the timeout plus this.
LEASE_MARGIN = timedelta(seconds=10)
#: At most this many answers are recorded in one transaction.
RECORD_BATCH = 200
#: How much of a failed answer's body goes into the log.
ERROR_BODY_CHARS = 200


@dataclass(frozen=True)
class _Claim:
    """A leased delivery with what sending it needs."""

    delivery: Claimed
    token: str
    url: str
    key_id: str
    secret: str
    body: bytes


@dataclass(frozen=True)
class _Answer:
    """How the target answered an attempt."""

    status_code: int
    latency: float
    error: str

    @property
    def ok(self) -> bool:
        return not self.error


def retry_delay(settings: ControlSettings, attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failure: doubling from the initial delay up to the
    maximum, with "equal jitter" (between half and all of it) so that retries spread out."""
    ceiling = min(settings.webhook_retry_initial * (1 << min(attempts - 1, 30)), settings.webhook_retry_max_interval)
    return ceiling * random.uniform(0.5, 1.0)


def breaker_pause(settings: ControlSettings, trips: int) -> timedelta:
    """How long the ``trips``-th pause in a row lasts: the breaker's pause, doubled with each
    trip, up to the longest retry interval (or the pause itself, when longer)."""
    beyond = max(trips - 1, 0)
    ceiling = max(settings.webhook_breaker_pause, settings.webhook_retry_max_interval)
    return min(settings.webhook_breaker_pause * (1 << min(beyond, 30)), ceiling)


class WebhookDispatcher:
    """Sends the outbox's deliveries until ``stop``. ``transport`` replaces the network (tests)."""

    def __init__(
        self,
        settings: ControlSettings,
        sessions: Sessions,
        signal: OutboxSignal,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._reads = sessions.reads
        self._writes = sessions.writes
        self._signal = signal
        self._allowed = parse_networks(settings.webhook_allowed_networks)
        self._client = httpx.AsyncClient(
            timeout=settings.webhook_timeout.total_seconds(),
            follow_redirects=False,  # a redirect would lead past the target check
            trust_env=False,
            transport=transport,
            headers={"user-agent": "Parley-Webhooks/1"},
        )
        self._lease = settings.webhook_timeout + LEASE_MARGIN
        self._in_flight: set[asyncio.Task[None]] = set()
        #: Answers waiting to be recorded (None: stop).
        self._answers: asyncio.Queue[tuple[_Claim, _Answer] | None] = asyncio.Queue()
        self._stopping = False

    async def run(self) -> None:
        """Claims and sends deliveries, ``webhook_concurrency`` at a time, until ``stop``."""
        recorder = asyncio.create_task(self._record_answers(), name="webhook-recorder")
        poll = self.settings.webhook_poll_interval.total_seconds()
        try:
            while not self._stopping:
                free = self.settings.webhook_concurrency - len(self._in_flight)
                claimed: list[_Claim] = []
                if free > 0:
                    try:
                        claimed = await self._claim(free)
                    except Exception:
                        log.exception("claiming webhook deliveries failed; trying again in %.1f s", poll)
                for claim in claimed:
                    task = asyncio.create_task(self._deliver(claim), name=f"webhook-{claim.delivery.delivery_id}")
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                if not claimed:
                    await self._signal.wait(poll)
        finally:
            await self._answers.put(None)
            await recorder

    async def stop(self, grace: float = 5.0) -> None:
        """Stops claiming; deliveries in flight get ``grace`` seconds to finish (one cut short
        is sent again when its lease expires)."""
        self._stopping = True
        self._signal.wake()
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=grace)
            for task in pending:
                task.cancel()
        await self._client.aclose()

    async def _claim(self, limit: int) -> list[_Claim]:
        now = utcnow()
        token = secrets.token_hex(16)
        async with self._reads() as session:
            if not await WebhookDeliveries(session).any_due(now=now):
                return []
        async with self._writes.begin() as session:
            deliveries = WebhookDeliveries(session)
            leased = await deliveries.claim(now=now, limit=limit, lease_until=now + self._lease, token=token)
            if not leased:
                return []
            bodies = await deliveries.bodies([d.event_id for d in leased])
            targets = await deliveries.targets(list({d.webhook_id for d in leased}))
        return [
            _Claim(d, token, *targets[d.webhook_id], bodies[d.event_id].encode())
            for d in leased
            if d.webhook_id in targets  # one deleted meanwhile took its deliveries with it
        ]

    async def _deliver(self, claim: _Claim) -> None:
        try:
            answer = await self._send(claim)
        except Exception as exc:
            log.exception("webhook delivery %s failed unexpectedly", claim.delivery.delivery_id)
            answer = _Answer(0, 0.0, f"unexpected error: {type(exc).__name__}")
        await self._answers.put((claim, answer))

    async def _send(self, claim: _Claim) -> _Answer:
        started = time.perf_counter()
        try:
            await check_target(claim.url, self._allowed)
        except TargetRefused as exc:
            return _Answer(0, 0.0, f"target refused: {exc}")
        headers = {
            "content-type": WEBHOOK_CONTENT_TYPE,
            "authorization": sign_webhook(claim.body, key_id=claim.key_id, secret=claim.secret),
        }
        try:
            response = await self._client.post(claim.url, content=claim.body, headers=headers)
        except httpx.HTTPError as exc:
            latency = time.perf_counter() - started
            return _Answer(0, latency, f"{type(exc).__name__}: {exc}"[:500] or type(exc).__name__)
        latency = time.perf_counter() - started
        ATTEMPT_SECONDS.observe(latency)
        if 200 <= response.status_code < 300:
            return _Answer(response.status_code, latency, "")
        return _Answer(
            response.status_code, latency, f"HTTP {response.status_code}: {response.text[:ERROR_BODY_CHARS]}"[:500]
        )

    async def _record_answers(self) -> None:
        """Records answers as they come, all those waiting in one transaction (a round trip
        per batch, not per delivery), then wakes the claimer: a room's next event may be due."""
        while True:
            first = await self._answers.get()
            batch = [first]
            while not self._answers.empty() and len(batch) < RECORD_BATCH:
                batch.append(self._answers.get_nowait())
            answers = [item for item in batch if item is not None]
            if answers:
                try:
                    await self._record(answers)
                except Exception:
                    log.exception(
                        "recording %d webhook deliveries failed; they are sent again when their leases expire",
                        len(answers),
                    )
                self._signal.wake()
            if None in batch:
                return

    async def _record(self, answers: Sequence[tuple[_Claim, _Answer]]) -> None:
        now = utcnow()
        outcomes = []
        failed: collections.Counter[str] = collections.Counter()
        succeeded: set[str] = set()
        for claim, answer in answers:
            delivery = claim.delivery
            attempts = delivery.attempts + 1
            state, next_attempt, delivered = DeliveryState.PENDING, now, None
            if answer.ok:
                state, delivered = DeliveryState.DELIVERED, now
                succeeded.add(delivery.webhook_id)
                ATTEMPTS.labels("delivered").inc()
                DELIVERY_LAG.observe((now - delivery.created_at).total_seconds())
            elif now - delivery.retry_from >= self.settings.webhook_retry_for:
                state = DeliveryState.FAILED
                ATTEMPTS.labels("gave_up").inc()
                log.warning(
                    "gave up webhook delivery %s to webhooks/%s after %d attempts: %s",
                    delivery.delivery_id,
                    delivery.webhook_id,
                    attempts,
                    answer.error,
                )
            else:
                next_attempt = now + retry_delay(self.settings, attempts)
                ATTEMPTS.labels("failed").inc()
                log.info(
                    "webhook delivery %s to webhooks/%s failed (attempt %d, next in %.1f s): %s",
                    delivery.delivery_id,
                    delivery.webhook_id,
                    attempts,
                    (next_attempt - now).total_seconds(),
                    answer.error,
                )
            if not answer.ok:
                failed[delivery.webhook_id] += 1
            outcomes.append(
                Outcome(
                    delivery.delivery_id,
                    claim.token,
                    state,
                    answer.status_code,
                    answer.latency,
                    answer.error,
                    next_attempt,
                    delivered,
                )
            )
        async with self._writes.begin() as session:
            await WebhookDeliveries(session).record(outcomes)
            webhooks = Webhooks(session)
            # In a fixed order, so that two replicas' transactions never wait on each other in a
            # cycle; a success resets the breaker, failures after it count again.
            for webhook_id in sorted(succeeded | set(failed)):
                if webhook_id in succeeded:
                    await webhooks.record_success(webhook_id)
                if webhook_id in failed:
                    await self._count_failures(webhooks, webhook_id, failed[webhook_id], now)

    async def _count_failures(self, webhooks: Webhooks, webhook_id: str, count: int, now: datetime) -> None:
        failures, paused_until, trips = await webhooks.record_failure(webhook_id, count)
        # Attempts in flight together fail together: they trip the breaker once, and only a
        # webhook that is not paused already.
        if failures >= self.settings.webhook_breaker_failures and (paused_until is None or paused_until <= now):
            pause = breaker_pause(self.settings, trips + 1)
            await webhooks.pause(webhook_id, now + pause, trips + 1)
            log.warning(
                "webhooks/%s failed %d times in a row: paused for %.0f s", webhook_id, failures, pause.total_seconds()
            )
