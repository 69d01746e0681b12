"""Meeting history: what SFU nodes report (``SfuReportService``) becomes meetings and their
participants, which owners and administrators of a room read (``MeetingService``); ended
meetings older than the retention are purged.

Reports are applied exactly once per node: each event carries the node's sequence number,
events already applied are skipped (a batch sent again because its answer was lost), and a
batch that would leave a hole is refused with FAILED_PRECONDITION (reason ``SEQUENCE_GAP``,
the message says ``expected sequence N``) so that the node resends from there.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.control.v1 import sfu_report_service_pb2 as report_pb
from parley.control.v1 import webhook_service_pb2 as webhook_pb
from parley.server import decode_page_token, encode_page_token
from parley.server import page_size as page_size_of
from parley.server.db import Sessions

from . import _mapper
from ._auth import Principal
from ._domain import Page, UseCases, new_id, utcnow
from ._errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable
from ._models import MeetingParticipantRow, MeetingRow, ParticipantState, Role, SfuNodeRow
from ._outbox import Outbox, OutboxSignal
from ._repos import MeetingParticipants, Meetings, Rooms, SfuNodes, Users
from ._settings import ControlSettings

#: The scope of the API keys SFU nodes report with.
REPORT_SCOPE = "sfu:report"


@dataclass
class _Batch:
    """One report being applied: its session, the outbox its webhook events go to, and the
    meetings it has touched, by sid."""

    session: AsyncSession
    outbox: Outbox
    node: str
    node_url: str
    meetings: dict[str, MeetingRow | None]


def _time(event: report_pb.SfuEvent) -> datetime:
    return event.time.ToDatetime(tzinfo=UTC)


class MeetingUseCases(UseCases):
    def __init__(self, settings: ControlSettings, sessions: Sessions, signal: OutboxSignal | None = None) -> None:
        super().__init__(settings, sessions)
        self._signal = signal or OutboxSignal()

    # -- SFU reports ----------------------------------------------------------------------

    async def report_events(
        self, caller: Principal, node: str, node_url: str, events: Sequence[report_pb.SfuEvent]
    ) -> int:
        """Applies a node's events once, in order; returns the node's applied sequence."""
        caller.require_authenticated()
        if not caller.is_api_key:
            raise PermissionDenied(f"only SFU nodes report events, with an API key holding {REPORT_SCOPE}")
        caller.require_scope(REPORT_SCOPE)
        for index, (before, after) in enumerate(itertools.pairwise(events), start=1):
            if after.sequence != before.sequence + 1:
                raise InvalidArgument.field(f"events[{index}].sequence", "sequence numbers must be consecutive")
        for _attempt in range(3):
            try:
                applied, wrote_events = await self._apply(node, node_url, events)
            except IntegrityError:
                # Two first reports of one node raced to create its row: apply again.
                continue
            if wrote_events:
                self._signal.wake()
            return applied
        raise Unavailable("the report collided with another one of the same node; send it again")

    async def _apply(self, node: str, node_url: str, events: Sequence[report_pb.SfuEvent]) -> tuple[int, bool]:
        """Applies the events not applied yet, and writes their webhook events, in one
        transaction; returns the node's applied sequence and whether events were written."""
        now = utcnow()
        async with self._writes.begin() as session:
            nodes = SfuNodes(session)
            row = await nodes.get(node, for_update=True)
            first_report = row is None
            if row is None:
                row = SfuNodeRow(node=node, node_url=node_url, applied_sequence=0, first_seen=now, last_seen=now)
                nodes.add(row)
                await session.flush()
            applied = row.applied_sequence
            fresh = [e for e in events if e.sequence > applied]
            if fresh and fresh[0].sequence != applied + 1:
                raise FailedPrecondition(
                    f"expected sequence {applied + 1} from node {node}, got {fresh[0].sequence}: "
                    f"resend from {applied + 1}",
                    reason="SEQUENCE_GAP",
                )
            batch = _Batch(session, Outbox(session), node, node_url, {})
            if first_report:
                await self._end_previous_runs(batch, now)
            for event in fresh:
                await self._apply_one(batch, event)
            row.node_url = node_url
            row.last_seen = now
            if fresh:
                row.applied_sequence = fresh[-1].sequence
            return row.applied_sequence, batch.outbox.written > 0

    async def _end_previous_runs(self, batch: _Batch, now: datetime) -> None:
        """A node started again at the same URL: what its previous run left open has ended."""
        for meeting in await Meetings(batch.session).open_at_url_of_other_nodes(batch.node_url, batch.node):
            await self._end(batch, meeting, now)

    async def _end(self, batch: _Batch, meeting: MeetingRow, at: datetime) -> None:
        meeting.ended_at = at
        for participant in await MeetingParticipants(batch.session).close_active(meeting.id, at=at):
            await self._emit(batch, "participant_left", meeting, at, participant=participant)
        await self._emit(batch, "room_finished", meeting, at)

    async def _emit(
        self,
        batch: _Batch,
        kind: str,
        meeting: MeetingRow,
        at: datetime,
        *,
        participant: MeetingParticipantRow | None = None,
        identity: str = "",
        track: webhook_pb.WebhookTrack | None = None,
    ) -> None:
        event = _mapper.webhook_event(kind, meeting, at, participant=participant, identity=identity, track=track)
        await batch.outbox.add(event, meeting.room_id)

    async def _meeting(self, batch: _Batch, event: report_pb.SfuEvent, *, create: bool) -> MeetingRow | None:
        """The meeting an event is about; created (from the event's time) when unknown and
        ``create``; None when its room does not exist (any more)."""
        sid = event.meeting_sid
        if sid in batch.meetings and (batch.meetings[sid] is not None or not create):
            return batch.meetings[sid]
        meetings = Meetings(batch.session)
        meeting = await meetings.by_sid(batch.node, sid)
        if meeting is None and create:
            room = await Rooms(batch.session).find(event.room)
            if room is not None and room.id == event.room:
                meeting = MeetingRow(
                    id=new_id(),
                    room_id=room.id,
                    node=batch.node,
                    node_url=batch.node_url,
                    meeting_sid=sid,
                    started_at=_time(event),
                    peak_participants=0,
                    participant_count=0,
                )
                meetings.add(meeting)
                await batch.session.flush()
                await self._emit(batch, "room_started", meeting, meeting.started_at)
        batch.meetings[sid] = meeting
        return meeting

    async def _apply_one(self, batch: _Batch, event: report_pb.SfuEvent) -> None:
        kind = event.WhichOneof("event")
        at = _time(event)
        if kind == "room_started":
            await self._meeting(batch, event, create=True)
        elif kind == "room_finished":
            meeting = await self._meeting(batch, event, create=False)
            if meeting is not None and meeting.ended_at is None:
                await self._end(batch, meeting, at)
        elif kind == "participant_joined":
            meeting = await self._meeting(batch, event, create=True)
            if meeting is not None:
                joined = event.participant_joined
                await self._add_participant(
                    batch,
                    meeting,
                    joined.identity,
                    joined.participant_sid,
                    joined.display_name,
                    at,
                    ParticipantState.ACTIVE,
                )
        elif kind == "participant_left":
            meeting = await self._meeting(batch, event, create=True)
            if meeting is not None:
                left = event.participant_left
                found = await MeetingParticipants(batch.session).by_sid(meeting.id, left.participant_sid)
                if found is not None and found.state == ParticipantState.ACTIVE:
                    found.left_at = at
                    found.state = ParticipantState.LEFT
                    await self._emit(batch, "participant_left", meeting, at, participant=found)
        elif kind == "participant_aborted":
            meeting = await self._meeting(batch, event, create=True)
            if meeting is not None:
                aborted = event.participant_aborted
                await self._add_participant(
                    batch,
                    meeting,
                    aborted.identity,
                    aborted.participant_sid,
                    aborted.display_name,
                    at,
                    ParticipantState.ABORTED,
                )
        elif kind in ("track_published", "track_unpublished"):
            await self._track_event(batch, event, kind)
        # Mutes are accepted and not kept: no webhook event reports them.

    async def _track_event(self, batch: _Batch, event: report_pb.SfuEvent, kind: str) -> None:
        """Track events are not kept in the history; they go to webhooks only."""
        meeting = await self._meeting(batch, event, create=True)
        if meeting is None:
            return
        change = event.track_published if kind == "track_published" else event.track_unpublished
        track = webhook_pb.WebhookTrack(sid=change.track_sid)
        if kind == "track_published":
            track.source = event.track_published.source
        participant = await MeetingParticipants(batch.session).active_by_identity(meeting.id, change.identity)
        await self._emit(
            batch, kind, meeting, _time(event), participant=participant, identity=change.identity, track=track
        )

    async def _add_participant(
        self,
        batch: _Batch,
        meeting: MeetingRow,
        identity: str,
        participant_sid: str,
        display_name: str,
        at: datetime,
        state: ParticipantState,
    ) -> None:
        participants = MeetingParticipants(batch.session)
        if await participants.by_sid(meeting.id, participant_sid) is not None:
            return
        user = await Users(batch.session).get(identity) if len(identity) == 32 else None
        row = MeetingParticipantRow(
            id=new_id(),
            meeting_id=meeting.id,
            identity=identity,
            participant_sid=participant_sid,
            user_id=user.id if user is not None else None,
            display_name=display_name,
            joined_at=at,
            left_at=at if state == ParticipantState.ABORTED else None,
            state=state,
        )
        participants.add(row)
        await batch.session.flush()
        if state == ParticipantState.ACTIVE:
            count, active = await participants.counts(meeting.id)
            meeting.participant_count = count
            meeting.peak_participants = max(meeting.peak_participants, active)
            await self._emit(batch, "participant_joined", meeting, at, participant=row)

    # -- history --------------------------------------------------------------------------

    async def list_meetings(
        self,
        caller: Principal,
        id_or_slug: str,
        *,
        page_size: int,
        page_token: str,
        started_after: datetime | None = None,
        started_before: datetime | None = None,
    ) -> Page[MeetingRow]:
        async with self._reads() as session:
            room = await self._room(session, id_or_slug)
            await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:read")
            scope = f"meetings|{room.id}|{started_after}|{started_before}"
            size = page_size_of(page_size)
            rows = await Meetings(session).page(
                room.id,
                started_after=started_after,
                started_before=started_before,
                after=decode_page_token(page_token, scope=scope),
                limit=size + 1,
            )
        if len(rows) <= size:
            return Page(rows, "")
        rows = rows[:size]
        return Page(rows, encode_page_token(rows[-1].started_at, rows[-1].id, scope=scope))

    async def _readable_meeting(
        self, session: AsyncSession, caller: Principal, id_or_slug: str, meeting_id: str
    ) -> MeetingRow:
        room = await self._room(session, id_or_slug)
        await self._require_role(session, room, caller, at_least=Role.ADMINISTRATOR, scope="rooms:read")
        meeting = await Meetings(session).get(room.id, meeting_id)
        if meeting is None:
            raise NotFound(f"meeting {meeting_id} of room {id_or_slug!r} not found")
        return meeting

    async def get_meeting(self, caller: Principal, id_or_slug: str, meeting_id: str) -> MeetingRow:
        async with self._reads() as session:
            return await self._readable_meeting(session, caller, id_or_slug, meeting_id)

    async def list_participants(
        self, caller: Principal, id_or_slug: str, meeting_id: str, *, page_size: int, page_token: str
    ) -> tuple[Page[MeetingParticipantRow], MeetingRow]:
        async with self._reads() as session:
            meeting = await self._readable_meeting(session, caller, id_or_slug, meeting_id)
            scope = f"meeting-participants|{meeting.id}"
            size = page_size_of(page_size)
            rows = await MeetingParticipants(session).page(
                meeting.id, after=decode_page_token(page_token, scope=scope), limit=size + 1
            )
        if len(rows) <= size:
            return Page(rows, ""), meeting
        rows = rows[:size]
        return Page(rows, encode_page_token(rows[-1].joined_at, rows[-1].id, scope=scope)), meeting

    # -- retention ------------------------------------------------------------------------

    async def purge_expired(self, *, now: datetime | None = None) -> int:
        """Deletes the meetings that ended longer than the retention ago; returns how many
        (none when the retention is zero: kept forever)."""
        retention = self.settings.meeting_retention
        if not retention:
            return 0
        cutoff = (now or utcnow()) - retention
        async with self._writes.begin() as session:
            return await Meetings(session).delete_ended_before(cutoff)
