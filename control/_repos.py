"""Repositories: the only module that writes SQL. Each wraps the session of one unit of work."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import NamedTuple, TypeVarTuple, cast

from sqlalchemy import ColumnElement, Select, Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from ._models import (
    ApiKeyRow,
    DeliveryState,
    LobbyEntryRow,
    LobbyState,
    MeetingParticipantRow,
    MeetingRow,
    ParticipantState,
    RecordingMode,
    RecordingRow,
    RecordingState,
    Role,
    RoomAccessRow,
    RoomRow,
    SfuNodeRow,
    UserRow,
    WebhookDeliveryRow,
    WebhookEventRow,
    WebhookRow,
)

_ROOM_ID = re.compile(r"^[0-9a-f]{32}$")


class Users:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, user_id: str) -> UserRow | None:
        return await self._s.get(UserRow, user_id)

    async def by_subject(self, subject: str) -> UserRow | None:
        return (await self._s.execute(select(UserRow).where(UserRow.subject == subject))).scalar_one_or_none()

    def add(self, row: UserRow) -> None:
        self._s.add(row)


class Rooms:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def find(self, id_or_slug: str, *, for_update: bool = False) -> RoomRow | None:
        """A room by id (32 hex digits) or slug; ``for_update`` locks it (PostgreSQL)."""
        column = RoomRow.id if _ROOM_ID.match(id_or_slug) else RoomRow.slug
        query = select(RoomRow).where(column == id_or_slug)
        if for_update:
            query = query.with_for_update()
        return (await self._s.execute(query)).scalar_one_or_none()

    async def find_with_role(self, id_or_slug: str, user_id: str | None) -> tuple[RoomRow, Role | None] | None:
        """A room and the role ``user_id`` holds on it (None: no role, or no user), in one query."""
        column = RoomRow.id if _ROOM_ID.match(id_or_slug) else RoomRow.slug
        on = and_(RoomAccessRow.room_id == RoomRow.id, RoomAccessRow.user_id == (user_id or ""))
        query = select(RoomRow, RoomAccessRow.role).outerjoin(RoomAccessRow, on).where(column == id_or_slug)
        found = (await self._s.execute(query)).first()
        return None if found is None else (found[0], found[1])

    def add(self, row: RoomRow) -> None:
        self._s.add(row)

    async def delete(self, row: RoomRow) -> None:
        await self._s.delete(row)

    async def page(
        self,
        *,
        member_user_id: str | None,
        conditions: Sequence[tuple[str, str]],
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RoomRow]:
        """Rooms newest first, keyset-paginated on (created_at, id).

        Args:
            member_user_id: Only rooms this user holds a role on; ``None`` for every room.
            conditions: Equality conditions ``(column, value)`` on access_level, slug, display_name.
            after: The (created_at, id) of the last room of the previous page.
            limit: How many rooms at most.
        """
        query = select(RoomRow)
        if member_user_id is not None:
            query = query.join(RoomAccessRow, RoomAccessRow.room_id == RoomRow.id).where(
                RoomAccessRow.user_id == member_user_id
            )
        for column, value in conditions:
            query = query.where(getattr(RoomRow, column) == value)
        query = _keyset(query, RoomRow, after, limit, newest_first=True)
        return list((await self._s.execute(query)).scalars())


class Accesses:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def role_of(self, room_id: str, user_id: str) -> Role | None:
        query = select(RoomAccessRow.role).where(RoomAccessRow.room_id == room_id, RoomAccessRow.user_id == user_id)
        return (await self._s.execute(query)).scalar_one_or_none()

    async def get(self, room_id: str, access_id: str) -> RoomAccessRow | None:
        row = await self._s.get(RoomAccessRow, access_id)
        return row if row is not None and row.room_id == room_id else None

    async def of_user(self, room_id: str, user_id: str) -> RoomAccessRow | None:
        query = select(RoomAccessRow).where(RoomAccessRow.room_id == room_id, RoomAccessRow.user_id == user_id)
        return (await self._s.execute(query)).scalar_one_or_none()

    async def count_owners(self, room_id: str) -> int:
        query = select(func.count()).where(RoomAccessRow.room_id == room_id, RoomAccessRow.role == Role.OWNER)
        return int((await self._s.execute(query)).scalar_one())

    def add(self, row: RoomAccessRow) -> None:
        self._s.add(row)

    async def delete(self, row: RoomAccessRow) -> None:
        await self._s.delete(row)

    async def page(
        self, room_id: str, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[tuple[RoomAccessRow, UserRow]]:
        """Accesses of a room with their users, oldest first."""
        query = (
            select(RoomAccessRow, UserRow)
            .join(UserRow, UserRow.id == RoomAccessRow.user_id)
            .where(RoomAccessRow.room_id == room_id)
        )
        query = _keyset(query, RoomAccessRow, after, limit)
        return [(a, u) for a, u in await self._s.execute(query)]


class LobbyEntries:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, room_id: str, entry_id: str, *, now: datetime) -> LobbyEntryRow | None:
        """A live (not lapsed) entry of the room."""
        row = await self._s.get(LobbyEntryRow, entry_id)
        if row is None or row.room_id != room_id or aware(row.expires_at) <= now:
            return None
        return row

    async def by_ticket_hash(self, room_id: str, ticket_hash: str) -> LobbyEntryRow | None:
        query = select(LobbyEntryRow).where(LobbyEntryRow.room_id == room_id, LobbyEntryRow.ticket_hash == ticket_hash)
        return (await self._s.execute(query)).scalar_one_or_none()

    async def waiting_of_user(self, room_id: str, user_id: str, *, now: datetime) -> LobbyEntryRow | None:
        query = select(LobbyEntryRow).where(
            LobbyEntryRow.room_id == room_id,
            LobbyEntryRow.user_id == user_id,
            LobbyEntryRow.state == LobbyState.WAITING,
            LobbyEntryRow.expires_at > now,
        )
        return (await self._s.execute(query.limit(1))).scalar_one_or_none()

    def add(self, row: LobbyEntryRow) -> None:
        self._s.add(row)

    async def purge_lapsed(self, room_id: str, *, now: datetime) -> None:
        await self._s.execute(
            delete(LobbyEntryRow).where(LobbyEntryRow.room_id == room_id, LobbyEntryRow.expires_at <= now)
        )

    async def page_waiting(
        self, room_id: str, *, now: datetime, after: tuple[datetime, str] | None, limit: int
    ) -> list[LobbyEntryRow]:
        query = select(LobbyEntryRow).where(
            LobbyEntryRow.room_id == room_id, LobbyEntryRow.state == LobbyState.WAITING, LobbyEntryRow.expires_at > now
        )
        query = _keyset(query, LobbyEntryRow, after, limit)
        return list((await self._s.execute(query)).scalars())


class ApiKeys:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, key_id: str) -> ApiKeyRow | None:
        return await self._s.get(ApiKeyRow, key_id)

    def add(self, row: ApiKeyRow) -> None:
        self._s.add(row)

    async def delete(self, row: ApiKeyRow) -> None:
        await self._s.delete(row)

    async def page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[ApiKeyRow]:
        query = select(ApiKeyRow)
        query = _keyset(query, ApiKeyRow, after, limit)
        return list((await self._s.execute(query)).scalars())


class SfuNodes:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, node: str, *, for_update: bool = False) -> SfuNodeRow | None:
        """A node; ``for_update`` locks its row (PostgreSQL), serialising its reports."""
        query = select(SfuNodeRow).where(SfuNodeRow.node == node)
        if for_update:
            query = query.with_for_update()
        return (await self._s.execute(query)).scalar_one_or_none()

    def add(self, row: SfuNodeRow) -> None:
        self._s.add(row)


class Meetings:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def by_sid(self, node: str, meeting_sid: str) -> MeetingRow | None:
        query = select(MeetingRow).where(MeetingRow.node == node, MeetingRow.meeting_sid == meeting_sid)
        return (await self._s.execute(query)).scalar_one_or_none()

    async def get(self, room_id: str, meeting_id: str) -> MeetingRow | None:
        row = await self._s.get(MeetingRow, meeting_id)
        return row if row is not None and row.room_id == room_id else None

    def add(self, row: MeetingRow) -> None:
        self._s.add(row)

    async def open_at_url_of_other_nodes(self, node_url: str, node: str) -> list[MeetingRow]:
        """Meetings still open that another run of the node at ``node_url`` left behind."""
        query = select(MeetingRow).where(
            MeetingRow.node_url == node_url, MeetingRow.ended_at.is_(None), MeetingRow.node != node
        )
        return list((await self._s.execute(query)).scalars())

    async def page(
        self,
        room_id: str,
        *,
        started_after: datetime | None,
        started_before: datetime | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[MeetingRow]:
        """A room's meetings newest first, keyset-paginated on (started_at, id)."""
        query = select(MeetingRow).where(MeetingRow.room_id == room_id)
        if started_after is not None:
            query = query.where(MeetingRow.started_at >= started_after)
        if started_before is not None:
            query = query.where(MeetingRow.started_at < started_before)
        if after is not None:
            started, last_id = after
            query = query.where(
                or_(MeetingRow.started_at < started, and_(MeetingRow.started_at == started, MeetingRow.id < last_id))
            )
        query = query.order_by(MeetingRow.started_at.desc(), MeetingRow.id.desc()).limit(limit)
        return list((await self._s.execute(query)).scalars())

    async def delete_ended_before(self, cutoff: datetime) -> int:
        """Deletes the meetings that ended before ``cutoff`` (their participants go with them)."""
        result = await self._s.execute(delete(MeetingRow).where(MeetingRow.ended_at < cutoff))
        return int(getattr(result, "rowcount", 0) or 0)


class MeetingParticipants:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def by_sid(self, meeting_id: str, participant_sid: str) -> MeetingParticipantRow | None:
        query = select(MeetingParticipantRow).where(
            MeetingParticipantRow.meeting_id == meeting_id, MeetingParticipantRow.participant_sid == participant_sid
        )
        return (await self._s.execute(query)).scalar_one_or_none()

    def add(self, row: MeetingParticipantRow) -> None:
        self._s.add(row)

    async def counts(self, meeting_id: str) -> tuple[int, int]:
        """(distinct identities whose media connected, participants active now) of a meeting."""
        of_meeting = MeetingParticipantRow.meeting_id == meeting_id
        distinct = select(func.count(func.distinct(MeetingParticipantRow.identity))).where(
            of_meeting, MeetingParticipantRow.state != ParticipantState.ABORTED
        )
        active = select(func.count()).where(of_meeting, MeetingParticipantRow.state == ParticipantState.ACTIVE)
        return int((await self._s.execute(distinct)).scalar_one()), int((await self._s.execute(active)).scalar_one())

    async def close_active(self, meeting_id: str, *, at: datetime) -> list[MeetingParticipantRow]:
        """Everyone still in the meeting leaves at ``at``; returns them."""
        query = select(MeetingParticipantRow).where(
            MeetingParticipantRow.meeting_id == meeting_id,
            MeetingParticipantRow.state == ParticipantState.ACTIVE,
        )
        rows = list((await self._s.execute(query.order_by(MeetingParticipantRow.joined_at))).scalars())
        for row in rows:
            row.left_at = at
            row.state = ParticipantState.LEFT
        return rows

    async def active_by_identity(self, meeting_id: str, identity: str) -> MeetingParticipantRow | None:
        """The participant in the meeting now under ``identity`` (the latest, if several)."""
        query = (
            select(MeetingParticipantRow)
            .where(
                MeetingParticipantRow.meeting_id == meeting_id,
                MeetingParticipantRow.identity == identity,
                MeetingParticipantRow.state == ParticipantState.ACTIVE,
            )
            .order_by(MeetingParticipantRow.joined_at.desc())
            .limit(1)
        )
        return (await self._s.execute(query)).scalar_one_or_none()

    async def page(
        self, meeting_id: str, *, after: tuple[datetime, str] | None, limit: int
    ) -> list[MeetingParticipantRow]:
        """A meeting's participants in the order they joined, keyset-paginated on (joined_at, id)."""
        query = select(MeetingParticipantRow).where(MeetingParticipantRow.meeting_id == meeting_id)
        if after is not None:
            joined, last_id = after
            query = query.where(
                or_(
                    MeetingParticipantRow.joined_at > joined,
                    and_(MeetingParticipantRow.joined_at == joined, MeetingParticipantRow.id > last_id),
                )
            )
        query = query.order_by(MeetingParticipantRow.joined_at, MeetingParticipantRow.id).limit(limit)
        return list((await self._s.execute(query)).scalars())


class Webhooks:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, webhook_id: str) -> WebhookRow | None:
        return await self._s.get(WebhookRow, webhook_id)

    async def subscriptions(self) -> list[tuple[str, list[str]]]:
        """(id, event types) of every webhook: what the outbox fans events out to."""
        rows = await self._s.execute(select(WebhookRow.id, WebhookRow.event_types))
        return [(webhook_id, list(types or [])) for webhook_id, types in rows.all()]

    def add(self, row: WebhookRow) -> None:
        self._s.add(row)

    async def delete(self, row: WebhookRow) -> None:
        await self._s.delete(row)

    async def page(self, *, after: tuple[datetime, str] | None, limit: int) -> list[WebhookRow]:
        return list((await self._s.execute(_keyset(select(WebhookRow), WebhookRow, after, limit))).scalars())

    async def record_success(self, webhook_id: str) -> None:
        """Resets the circuit breaker. Writes (and locks the row) only when it was not reset
        already: every delivery of a webhook succeeds here, on every replica."""
        await self._s.execute(
            update(WebhookRow)
            .where(
                WebhookRow.id == webhook_id,
                or_(
                    WebhookRow.consecutive_failures != 0,
                    WebhookRow.paused_until.is_not(None),
                    WebhookRow.breaker_trips != 0,
                ),
            )
            .values(consecutive_failures=0, paused_until=None, breaker_trips=0)
            .execution_options(synchronize_session=False)
        )

    async def record_failure(self, webhook_id: str, count: int = 1) -> tuple[int, datetime | None, int]:
        """Counts ``count`` more failures in a row (locking the row until the transaction
        ends); returns (failures in a row, paused until, breaker trips)."""
        result = await self._s.execute(
            update(WebhookRow)
            .where(WebhookRow.id == webhook_id)
            .values(consecutive_failures=WebhookRow.consecutive_failures + count)
            .returning(WebhookRow.consecutive_failures, WebhookRow.paused_until, WebhookRow.breaker_trips)
            .execution_options(synchronize_session=False)
        )
        found = result.one_or_none()
        if found is None:
            return 0, None, 0
        failures, paused_until, trips = found
        return int(failures), aware(paused_until) if paused_until is not None else None, int(trips)

    async def pause(self, webhook_id: str, until: datetime, trips: int) -> None:
        await self._s.execute(
            update(WebhookRow)
            .where(WebhookRow.id == webhook_id)
            .values(paused_until=until, breaker_trips=trips)
            .execution_options(synchronize_session=False)
        )


class Recordings:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def get(self, recording_id: str, *, for_update: bool = False) -> RecordingRow | None:
        query = select(RecordingRow).where(RecordingRow.id == recording_id)
        if for_update:
            query = query.with_for_update()
        return (await self._s.execute(query)).scalar_one_or_none()

    async def by_egress(self, egress: str, *, for_update: bool = False) -> RecordingRow | None:
        query = select(RecordingRow).where(RecordingRow.egress == egress)
        if for_update:
            query = query.with_for_update()
        return (await self._s.execute(query)).scalar_one_or_none()

    async def by_file(self, bucket: str, key: str, *, for_update: bool = False) -> list[RecordingRow]:
        """The recordings whose file is ``key`` in ``bucket`` (one, unless a key was reused)."""
        query = select(RecordingRow).where(RecordingRow.file_key == key, RecordingRow.file_bucket == bucket)
        if for_update:
            query = query.with_for_update()
        return list((await self._s.execute(query)).scalars())

    def add(self, row: RecordingRow) -> None:
        self._s.add(row)

    async def delete(self, row: RecordingRow) -> None:
        await self._s.delete(row)

    async def page(
        self,
        *,
        room_id: str | None,
        moderator_user_id: str | None,
        after: tuple[datetime, str] | None,
        limit: int,
    ) -> list[RecordingRow]:
        """Recordings newest first, keyset-paginated on (created_at, id).

        Args:
            room_id: Only this room's; ``None`` for every room.
            moderator_user_id: Only those of rooms this user owns or administers.
            after: The (created_at, id) of the last recording of the previous page.
            limit: How many at most.
        """
        r = RecordingRow
        query = select(r)
        if room_id is not None:
            query = query.where(r.room_id == room_id)
        if moderator_user_id is not None:
            moderated = select(RoomAccessRow.room_id).where(
                RoomAccessRow.user_id == moderator_user_id,
                RoomAccessRow.role.in_([Role.OWNER, Role.ADMINISTRATOR]),
            )
            query = query.where(r.room_id.in_(moderated))
        if after is not None:
            created, last_id = after
            query = query.where(or_(r.created_at < created, and_(r.created_at == created, r.id < last_id)))
        query = query.order_by(r.created_at.desc(), r.id.desc()).limit(limit)
        return list((await self._s.execute(query)).scalars())

    async def silent_ids(self, *, reported_before: datetime) -> list[str]:
        """Recordings still waiting on their egress (initiated, active, or stopped with the
        egress not final) that last heard from it (or were created) before the cutoff."""
        r = RecordingRow
        query = select(r.id).where(
            or_(
                r.state.in_([RecordingState.INITIATED, RecordingState.ACTIVE]),
                and_(r.state == RecordingState.STOPPED, r.egress_final.is_(False)),
            ),
            func.coalesce(r.last_report_at, r.created_at) < reported_before,
        )
        return list((await self._s.execute(query)).scalars())

    # -- follow-ups: transcribing and summarizing saved recordings ------------------------

    @staticmethod
    def _followup_free(now: datetime) -> ColumnElement[bool]:
        r = RecordingRow
        return and_(
            r.state == RecordingState.SAVED,
            or_(r.mode == RecordingMode.TRANSCRIPT, r.transcribe.is_(True)),
            or_(r.followup_until.is_(None), r.followup_until <= now),
        )

    async def followups_due(self, *, now: datetime, limit: int) -> list[str]:
        """Saved recordings that want a transcription (transcript mode, or ``transcribe``) and
        that no control process holds now, oldest first."""
        query = (
            select(RecordingRow.id)
            .where(self._followup_free(now))
            .order_by(RecordingRow.saved_at, RecordingRow.id)
            .limit(limit)
        )
        return list((await self._s.execute(query)).scalars())

    async def claim_followup(self, recording_id: str, *, owner: str, now: datetime, until: datetime) -> bool:
        """Takes a recording's follow-up until ``until``, if it is still free: one conditional
        UPDATE, so two replicas never both take it."""
        result = await self._s.execute(
            update(RecordingRow)
            .where(RecordingRow.id == recording_id, self._followup_free(now))
            .values(followup_owner=owner, followup_until=until)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1

    async def update_followup(self, recording_id: str, *, owner: str, **values: object) -> bool:
        """Writes ``values`` to a recording whose follow-up ``owner`` still holds (saved, not
        deleted, not taken by another); False when it no longer does."""
        result = await self._s.execute(
            update(RecordingRow)
            .where(
                RecordingRow.id == recording_id,
                RecordingRow.followup_owner == owner,
                RecordingRow.state == RecordingState.SAVED,
            )
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0) == 1


class Claimed(NamedTuple):
    """A delivery a worker has leased."""

    seq: int
    delivery_id: str
    webhook_id: str
    event_id: str
    attempts: int
    created_at: datetime
    retry_from: datetime


class Outcome(NamedTuple):
    """What an attempt ended in, as the delivery's row records it."""

    delivery_id: str
    token: str
    state: DeliveryState
    status_code: int
    latency: float
    error: str
    next_attempt_at: datetime
    delivered_at: datetime | None


def _due(now: datetime) -> Select[int]:
    """Sequence numbers of the deliveries that are due ``now``: pending, their retry time come,
    not leased (or their lease expired), of a webhook that is not paused."""
    d = WebhookDeliveryRow
    return (
        select(d.seq)
        .join(WebhookRow, WebhookRow.id == d.webhook_id)
        .where(
            d.state == DeliveryState.PENDING,
            d.next_attempt_at <= now,
            or_(d.lease_until.is_(None), d.lease_until <= now),
            or_(WebhookRow.paused_until.is_(None), WebhookRow.paused_until <= now),
        )
    )


class WebhookDeliveries:
    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def lock_room(self, room_id: str) -> None:
        """Serialises the transactions that write a room's events until they end, so that
        delivery sequence numbers follow commit order within a room (two SFU nodes may report
        one room while one of them restarts). PostgreSQL only: SQLite writes one at a time."""
        if self._s.get_bind().dialect.name == "postgresql":
            await self._s.execute(select(func.pg_advisory_xact_lock(func.hashtext("webhooks:" + room_id))))

    def add_event(self, event: WebhookEventRow, deliveries: Sequence[WebhookDeliveryRow]) -> None:
        self._s.add(event)
        self._s.add_all(deliveries)

    async def any_due(self, *, now: datetime) -> bool:
        """Whether some delivery of a webhook that is not paused is due: a read, so that an
        idle worker does not take the write lock (SQLite's only one) every time it looks."""
        query = _due(now).limit(1)
        return (await self._s.execute(query)).first() is not None

    async def claim(self, *, now: datetime, limit: int, lease_until: datetime, token: str) -> list[Claimed]:
        """Leases up to ``limit`` deliveries that are due, each the oldest pending one of its
        (webhook, room), of webhooks that are not paused, in one statement; ``FOR UPDATE SKIP
        LOCKED`` lets several workers (replicas) claim at once without taking the same row.
        Returns them oldest first."""
        d = WebhookDeliveryRow
        earlier = aliased(WebhookDeliveryRow)
        older_pending = (
            select(earlier.seq)
            .where(
                earlier.webhook_id == d.webhook_id,
                earlier.room_id == d.room_id,
                earlier.state == DeliveryState.PENDING,
                earlier.seq < d.seq,
            )
            .exists()
        )
        due = _due(now).where(~older_pending).order_by(d.seq).limit(limit).with_for_update(skip_locked=True, of=d)
        leased = (
            update(d)
            .where(d.seq.in_(due))
            .values(lease_until=lease_until, lease_token=token)
            .returning(d.seq, d.id, d.webhook_id, d.event_id, d.attempts, d.created_at, d.retry_from)
            .execution_options(synchronize_session=False)
        )
        rows = (await self._s.execute(leased)).all()
        return sorted(
            (
                Claimed(seq, delivery_id, webhook_id, event_id, attempts, aware(created), aware(retry_from))
                for seq, delivery_id, webhook_id, event_id, attempts, created, retry_from in rows
            ),
            key=lambda claimed: claimed.seq,
        )

    async def bodies(self, event_ids: Sequence[str]) -> dict[str, str]:
        query = select(WebhookEventRow.id, WebhookEventRow.body).where(WebhookEventRow.id.in_(event_ids))
        return {event_id: body for event_id, body in (await self._s.execute(query)).all()}

    async def targets(self, webhook_ids: Sequence[str]) -> dict[str, tuple[str, str, str]]:
        """(url, signing key id, secret) of each webhook that still exists."""
        query = select(WebhookRow).where(WebhookRow.id.in_(webhook_ids))
        return {row.id: (row.url, row.signing_key_id, row.secret) for row in (await self._s.execute(query)).scalars()}

    async def record(self, outcomes: Sequence[Outcome]) -> None:
        """Records attempts' outcomes, in one statement (executed many), each only if the
        delivery is still leased to the worker that made the attempt."""
        table = cast(Table, WebhookDeliveryRow.__table__)
        t = table.c
        stmt = (
            update(table)
            .where(t.id == bindparam("o_id"), t.lease_token == bindparam("o_token"))
            .values(
                state=bindparam("o_state"),
                attempts=t.attempts + 1,
                last_status_code=bindparam("o_status"),
                last_latency=bindparam("o_latency"),
                last_error=bindparam("o_error"),
                next_attempt_at=bindparam("o_next"),
                delivered_at=bindparam("o_delivered"),
                lease_until=None,
                lease_token=None,
            )
        )
        await self._s.execute(
            stmt,
            [
                {
                    "o_id": o.delivery_id,
                    "o_token": o.token,
                    "o_state": o.state,
                    "o_status": o.status_code,
                    "o_latency": o.latency,
                    "o_error": o.error,
                    "o_next": o.next_attempt_at,
                    "o_delivered": o.delivered_at,
                }
                for o in outcomes
            ],
        )

    async def get(self, webhook_id: str, delivery_id: str) -> WebhookDeliveryRow | None:
        query = select(WebhookDeliveryRow).where(
            WebhookDeliveryRow.id == delivery_id, WebhookDeliveryRow.webhook_id == webhook_id
        )
        return (await self._s.execute(query)).scalar_one_or_none()

    async def page(
        self, webhook_id: str, *, state: DeliveryState | None, before_seq: int | None, limit: int
    ) -> list[WebhookDeliveryRow]:
        """A webhook's deliveries, newest first, keyset-paginated on ``seq``."""
        query = select(WebhookDeliveryRow).where(WebhookDeliveryRow.webhook_id == webhook_id)
        if state is not None:
            query = query.where(WebhookDeliveryRow.state == state)
        if before_seq is not None:
            query = query.where(WebhookDeliveryRow.seq < before_seq)
        query = query.order_by(WebhookDeliveryRow.seq.desc()).limit(limit)
        return list((await self._s.execute(query)).scalars())

    async def delete_finished_before(self, cutoff: datetime) -> int:
        """Deletes delivered and failed deliveries older than ``cutoff``, then the events no
        delivery needs any more."""
        result = await self._s.execute(
            delete(WebhookDeliveryRow).where(
                WebhookDeliveryRow.state != DeliveryState.PENDING, WebhookDeliveryRow.created_at < cutoff
            )
        )
        needed = select(WebhookDeliveryRow.event_id).where(WebhookDeliveryRow.event_id == WebhookEventRow.id).exists()
        await self._s.execute(delete(WebhookEventRow).where(WebhookEventRow.created_at < cutoff, ~needed))
        return int(getattr(result, "rowcount", 0) or 0)


Keyed = type[RoomRow] | type[RoomAccessRow] | type[LobbyEntryRow] | type[ApiKeyRow] | type[WebhookRow]
Ts = TypeVarTuple("Ts")


def _keyset(
    query: Select[*Ts],
    model: Keyed,
    after: tuple[datetime, str] | None,
    limit: int,
    *,
    newest_first: bool = False,
) -> Select[*Ts]:
    """Orders by (created_at, id) and starts after the last row of the previous page."""
    if after is not None:
        created, last_id = after
        if newest_first:
            query = query.where(or_(model.created_at < created, and_(model.created_at == created, model.id < last_id)))
        else:
            query = query.where(or_(model.created_at > created, and_(model.created_at == created, model.id > last_id)))
    if newest_first:
        return query.order_by(model.created_at.desc(), model.id.desc()).limit(limit)
    return query.order_by(model.created_at, model.id).limit(limit)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
