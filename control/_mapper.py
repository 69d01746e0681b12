"""Rows to protos and enum conversions: the one place that knows both shapes."""

from __future__ import annotations

from datetime import datetime, timedelta

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import status_pb2

from parley import TRACK_SOURCE_NAMES, TRACK_SOURCE_VALUES, VideoGrants
from parley.control.v1 import meeting_service_pb2 as meeting_pb
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import resources_pb2 as res
from parley.control.v1 import room_service_pb2 as room_pb
from parley.control.v1 import webhook_service_pb2 as webhook_pb
from parley.server import EnumNames

from ._models import (
    AccessLevel,
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
    UserRow,
    WebhookDeliveryRow,
    WebhookRow,
)
from ._repos import aware

#: The stored names ↔ the contract's values, read from the enums' descriptors.
ACCESS_LEVELS = EnumNames(res.AccessLevel, AccessLevel)
ROLES = EnumNames(res.Role, Role)
LOBBY_STATES = EnumNames(res.LobbyEntryState, LobbyState)
PARTICIPANT_STATES = EnumNames(meeting_pb.ParticipantState, ParticipantState)
DELIVERY_STATES = EnumNames(webhook_pb.WebhookDeliveryState, DeliveryState)
RECORDING_MODES = EnumNames(recording_pb.RecordingMode, RecordingMode)
RECORDING_STATES = EnumNames(recording_pb.RecordingState, RecordingState)

#: Contract value → stored name, and the track sources both ways (stored as their short names).
ACCESS_LEVEL_NAMES = ACCESS_LEVELS.names
ROLE_NAMES = ROLES.names
SOURCES = TRACK_SOURCE_VALUES
SOURCE_NAMES = TRACK_SOURCE_NAMES


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(aware(moment))
    return ts


def etag(row: RoomRow) -> str:
    return f'W/"{row.version}"'


def user(row: UserRow) -> res.User:
    return res.User(
        name=f"users/{row.id}",
        subject=row.subject,
        email=row.email,
        display_name=row.display_name,
        locale=row.locale,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )


def room(row: RoomRow) -> res.Room:
    return res.Room(
        name=f"rooms/{row.id}",
        slug=row.slug,
        display_name=row.display_name,
        access_level=ACCESS_LEVELS.value(row.access_level),
        configuration=res.RoomConfiguration(
            publish_sources=[SOURCES[s] for s in row.publish_sources],
            everyone_can_mute=row.everyone_can_mute,
        ),
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
        etag=etag(row),
    )


def room_access(row: RoomAccessRow, owner: UserRow) -> res.RoomAccess:
    return res.RoomAccess(
        name=f"rooms/{row.room_id}/accesses/{row.id}",
        user=f"users/{row.user_id}",
        role=ROLES.value(row.role),
        user_display_name=owner.display_name,
        create_time=timestamp(row.created_at),
    )


def lobby_entry(row: LobbyEntryRow) -> res.LobbyEntry:
    return res.LobbyEntry(
        name=f"rooms/{row.room_id}/lobbyEntries/{row.id}",
        display_name=row.display_name,
        user=f"users/{row.user_id}" if row.user_id else "",
        state=LOBBY_STATES.value(row.state),
        create_time=timestamp(row.created_at),
        expire_time=timestamp(row.expires_at),
    )


def api_key(row: ApiKeyRow) -> res.ApiKey:
    return res.ApiKey(
        name=f"apiKeys/{row.id}",
        display_name=row.display_name,
        scopes=row.scopes,
        create_time=timestamp(row.created_at),
    )


def meeting(row: MeetingRow) -> meeting_pb.Meeting:
    found = meeting_pb.Meeting(
        name=f"rooms/{row.room_id}/meetings/{row.id}",
        start_time=timestamp(row.started_at),
        peak_participants=row.peak_participants,
        participant_count=row.participant_count,
        active=row.ended_at is None,
    )
    if row.ended_at is not None:
        found.end_time.CopyFrom(timestamp(row.ended_at))
    return found


def meeting_participant(row: MeetingParticipantRow, room_id: str, *, now: datetime) -> meeting_pb.MeetingParticipant:
    """A participant; the duration of one still in the meeting runs until ``now``."""
    joined = aware(row.joined_at)
    left = aware(row.left_at) if row.left_at is not None else None
    duration = duration_pb2.Duration()
    duration.FromTimedelta(max((left or now) - joined, timedelta(0)))
    found = meeting_pb.MeetingParticipant(
        name=f"rooms/{room_id}/meetings/{row.meeting_id}/participants/{row.id}",
        identity=row.identity,
        user=f"users/{row.user_id}" if row.user_id else "",
        display_name=row.display_name,
        join_time=timestamp(joined),
        duration=duration,
        state=PARTICIPANT_STATES.value(row.state),
    )
    if left is not None:
        found.leave_time.CopyFrom(timestamp(left))
    return found


def webhook_event(
    event: str,
    meeting_row: MeetingRow,
    at: datetime,
    *,
    participant: MeetingParticipantRow | None = None,
    identity: str = "",
    track: webhook_pb.WebhookTrack | None = None,
) -> webhook_pb.WebhookEvent:
    """An event about a meeting as webhooks receive it (its ``id`` is set by the outbox);
    ``identity`` stands in for a participant whose row is unknown."""
    found = webhook_pb.WebhookEvent(
        event=event, create_time=timestamp(at), room=f"rooms/{meeting_row.room_id}", meeting=meeting(meeting_row)
    )
    if participant is not None:
        found.participant.CopyFrom(meeting_participant(participant, meeting_row.room_id, now=at))
    elif identity:
        found.participant.identity = identity
    if track is not None:
        found.track.CopyFrom(track)
    return found


def webhook(row: WebhookRow) -> webhook_pb.Webhook:
    found = webhook_pb.Webhook(
        name=f"webhooks/{row.id}",
        display_name=row.display_name,
        url=row.url,
        event_types=row.event_types,
        signing_key_id=row.signing_key_id,
        consecutive_failures=row.consecutive_failures,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )
    if row.paused_until is not None:
        found.paused_until.CopyFrom(timestamp(row.paused_until))
    return found


def webhook_delivery(row: WebhookDeliveryRow) -> webhook_pb.WebhookDelivery:
    latency = duration_pb2.Duration()
    latency.FromTimedelta(timedelta(seconds=row.last_latency))
    found = webhook_pb.WebhookDelivery(
        name=f"webhooks/{row.webhook_id}/deliveries/{row.id}",
        event_id=row.event_id,
        event=row.event,
        room=f"rooms/{row.room_id}",
        state=DELIVERY_STATES.value(row.state),
        attempts=row.attempts,
        last_status_code=row.last_status_code,
        last_latency=latency,
        last_error=row.last_error,
        create_time=timestamp(row.created_at),
    )
    if row.state == DeliveryState.PENDING:
        found.next_attempt_time.CopyFrom(timestamp(row.next_attempt_at))
    if row.delivered_at is not None:
        found.deliver_time.CopyFrom(timestamp(row.delivered_at))
    return found


def recording_name(row: RecordingRow) -> str:
    return f"rooms/{row.room_id}/recordings/{row.id}"


def recording(row: RecordingRow) -> recording_pb.Recording:
    found = recording_pb.Recording(
        name=recording_name(row),
        mode=RECORDING_MODES.value(row.mode),
        options=recording_pb.RecordingOptions(
            language=row.language, transcribe=row.transcribe, collect_metadata=row.collect_metadata
        ),
        state=RECORDING_STATES.value(row.state),
        egress=row.egress,
        creator=row.creator,
        transcription=row.transcription,
        summary=row.summary,
        metadata_agent=row.metadata_agent,
        create_time=timestamp(row.created_at),
        update_time=timestamp(row.updated_at),
    )
    if row.error_code:
        found.error.CopyFrom(status_pb2.Status(code=row.error_code, message=row.error_message))
    if row.file_key:
        found.file.CopyFrom(recording_file(row))
    for field, moment in (("start_time", row.started_at), ("stop_time", row.stopped_at), ("save_time", row.saved_at)):
        if moment is not None:
            getattr(found, field).CopyFrom(timestamp(moment))
    return found


def recording_file(row: RecordingRow) -> recording_pb.RecordingFile:
    duration = duration_pb2.Duration()
    duration.FromMilliseconds(row.file_duration_ms)
    return recording_pb.RecordingFile(
        content_type=row.file_content_type,
        size_bytes=row.file_size_bytes,
        duration=duration,
        location=row.file_location,
    )


def join_grants(room: RoomRow, *, moderator: bool) -> room_pb.JoinGrants:
    """Grants of a participant: moderators may do everything; others what the room allows."""
    sources = [] if moderator else [SOURCES[s] for s in room.publish_sources]
    return room_pb.JoinGrants(
        can_publish=moderator or bool(sources),
        can_subscribe=True,
        can_publish_data=True,
        publish_sources=sources,
        room_admin=moderator,
        can_mute_others=moderator or room.everyone_can_mute,
    )


def video_grants(room: RoomRow, grants: room_pb.JoinGrants) -> VideoGrants:
    """The join token's claims for ``grants`` in ``room``."""
    return VideoGrants(
        room=room.id,
        can_publish=grants.can_publish,
        can_subscribe=grants.can_subscribe,
        can_publish_data=grants.can_publish_data,
        can_publish_sources=tuple(SOURCE_NAMES[s] for s in grants.publish_sources),
        hidden=grants.hidden,
        recorder=grants.recorder,
        room_admin=grants.room_admin,
        can_mute_others=grants.can_mute_others,
    )


def join_grant(
    room: RoomRow, *, token: str, sfu_url: str, identity: str, grants: room_pb.JoinGrants, expires: datetime
) -> room_pb.JoinGrant:
    return room_pb.JoinGrant(
        room=f"rooms/{room.id}",
        token=token,
        sfu_url=sfu_url,
        identity=identity,
        grants=grants,
        expire_time=timestamp(expires),
    )


def lobby_ticket(entry: LobbyEntryRow, ticket: str) -> room_pb.LobbyTicket:
    return room_pb.LobbyTicket(entry=lobby_entry(entry), ticket=ticket)


def join_response(outcome: room_pb.JoinGrant | room_pb.LobbyTicket) -> room_pb.JoinRoomResponse:
    """What JoinRoom answers: a grant to enter with, or a ticket to wait in the lobby with."""
    if isinstance(outcome, room_pb.JoinGrant):
        return room_pb.JoinRoomResponse(grant=outcome)
    return room_pb.JoinRoomResponse(lobby=outcome)
