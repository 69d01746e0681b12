"""Database tables. Schema changes go through Alembic migrations (control/migrations)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from parley.server import db

_MIGRATIONS = Path(__file__).parent / "migrations"


# The values these columns store. Each member is named as its contract value less the enum's
# prefix (``AccessLevel.PUBLIC`` for ``ACCESS_LEVEL_PUBLIC``); the mapper pairs them with the
# contract through parley.server.EnumNames, which refuses an enum that misses a value.


class AccessLevel(StrEnum):
    """Who may enter a room without waiting in its lobby (``parley.control.v1.AccessLevel``)."""

    PUBLIC = "public"
    TRUSTED = "trusted"
    RESTRICTED = "restricted"


class Role(StrEnum):
    """A user's role on a room (``parley.control.v1.Role``)."""

    MEMBER = "member"
    ADMINISTRATOR = "administrator"
    OWNER = "owner"


class LobbyState(StrEnum):
    """Where a lobby entry stands (``parley.control.v1.LobbyEntryState``)."""

    WAITING = "waiting"
    ACCEPTED = "accepted"
    DENIED = "denied"


class ParticipantState(StrEnum):
    """How a participant's presence in a meeting stands (``parley.control.v1.ParticipantState``)."""

    ACTIVE = "active"
    LEFT = "left"
    ABORTED = "aborted"


class DeliveryState(StrEnum):
    """Where a webhook delivery stands (``parley.control.v1.WebhookDeliveryState``)."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class RecordingMode(StrEnum):
    """What a recording holds (``parley.control.v1.RecordingMode``)."""

    SCREEN_RECORDING = "screen_recording"
    TRANSCRIPT = "transcript"


class RecordingState(StrEnum):
    """Where a recording is in its life (``parley.control.v1.RecordingState``)."""

    INITIATED = "initiated"
    ACTIVE = "active"
    STOPPED = "stopped"
    SAVED = "saved"
    ABORTED = "aborted"
    FAILED_TO_START = "failed_to_start"
    FAILED_TO_STOP = "failed_to_stop"
    FAILED = "failed"
    NOTIFICATION_SUCCEEDED = "notification_succeeded"
    NOTIFICATION_FAILED = "notification_failed"


#: The states of a recording that holds its room: at most one per room (a partial unique index).
RUNNING_RECORDING_STATES = (RecordingState.INITIATED, RecordingState.ACTIVE)
_RUNNING_SQL = text("state IN ('initiated', 'active')")


async def migrate(engine: AsyncEngine) -> None:
    """Brings control's tables to the newest migration (the server at start, ``keys`` commands)."""
    await db.migrate(engine, _MIGRATIONS, version_table="alembic_version")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str] = mapped_column(String(320), default="")
    display_name: Mapped[str] = mapped_column(String(100), default="")
    locale: Mapped[str] = mapped_column(String(35), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RoomRow(Base):
    __tablename__ = "rooms"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    access_level: Mapped[AccessLevel] = mapped_column(db.StrEnumColumn(AccessLevel, 16))
    #: Sources non-moderators may publish: ``camera``, ``microphone``, ``screen_share``...
    publish_sources: Mapped[list[str]] = mapped_column(JSON)
    everyone_can_mute: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Bumped by every update; the etag is derived from it.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]


class RoomAccessRow(Base):
    __tablename__ = "room_accesses"
    __table_args__ = (UniqueConstraint("room_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[Role] = mapped_column(db.StrEnumColumn(Role, 16))
    created_at: Mapped[datetime]


class LobbyEntryRow(Base):
    __tablename__ = "lobby_entries"
    __table_args__ = (Index("ix_lobby_entries_room_state", "room_id", "state", "expires_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), default=None)
    #: The participant identity the join token will carry once let in.
    identity: Mapped[str] = mapped_column(String(128))
    display_name: Mapped[str] = mapped_column(String(100))
    #: SHA-256 of the ticket handed to the person waiting.
    ticket_hash: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[LobbyState] = mapped_column(db.StrEnumColumn(LobbyState, 16))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    #: SHA-256 of the secret; secrets are random 32-byte strings, so no slow hash is needed.
    secret_hash: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    scopes: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(index=True)


class MeetingRow(Base):
    """One meeting: a room's session on an SFU node, as the node reported it."""

    __tablename__ = "meetings"
    __table_args__ = (
        UniqueConstraint("node", "meeting_sid"),
        Index("ix_meetings_room_started", "room_id", "started_at"),
        Index("ix_meetings_node_url_ended", "node_url", "ended_at"),
        Index("ix_meetings_ended", "ended_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    #: The reporting node's id (new each time the node starts) and where clients reach it.
    node: Mapped[str] = mapped_column(String(64))
    node_url: Mapped[str] = mapped_column(String(300))
    #: The meeting on the node (``RM_...``).
    meeting_sid: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    peak_participants: Mapped[int] = mapped_column(Integer, default=0)
    #: Distinct identities whose media connected.
    participant_count: Mapped[int] = mapped_column(Integer, default=0)


class MeetingParticipantRow(Base):
    __tablename__ = "meeting_participants"
    __table_args__ = (
        UniqueConstraint("meeting_id", "participant_sid"),
        Index("ix_meeting_participants_meeting_joined", "meeting_id", "joined_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    identity: Mapped[str] = mapped_column(String(255))
    #: The participant's session on the node (``PA_...``).
    participant_sid: Mapped[str] = mapped_column(String(64))
    #: Set when the identity is a known user's id.
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    joined_at: Mapped[datetime]
    left_at: Mapped[datetime | None] = mapped_column(default=None)
    state: Mapped[ParticipantState] = mapped_column(db.StrEnumColumn(ParticipantState, 16))


class SfuNodeRow(Base):
    """A reporting SFU node (one row per node id, i.e. per run of a node)."""

    __tablename__ = "sfu_nodes"

    node: Mapped[str] = mapped_column(String(64), primary_key=True)
    node_url: Mapped[str] = mapped_column(String(300))
    #: The sequence number of the node's newest applied event.
    applied_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


class WebhookRow(Base):
    """A target that receives events (``webhooks/{webhook}``)."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    url: Mapped[str] = mapped_column(String(2000))
    #: The event types it wants; empty: all of them.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    #: Signs deliveries. Kept as is (not hashed): signing needs it.
    secret: Mapped[str] = mapped_column(String(100))
    #: Bumped by each rotation; part of the signing key id.
    secret_version: Mapped[int] = mapped_column(Integer, default=1)
    #: The circuit breaker: failures in a row, and until when deliveries are paused.
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    paused_until: Mapped[datetime | None] = mapped_column(default=None)
    #: How many times in a row the breaker has paused it (each pause twice the previous).
    breaker_trips: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]

    @property
    def signing_key_id(self) -> str:
        """The key id deliveries are signed under (the JWT ``iss``): new with each rotation."""
        return f"{self.id}.{self.secret_version}"


class WebhookEventRow(Base):
    """The outbox: one event, written in the transaction of the change it reports, with the
    exact body every delivery of it sends."""

    __tablename__ = "webhook_events"

    #: ``WebhookEvent.id``.
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    event: Mapped[str] = mapped_column(String(40))
    room_id: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(index=True)


class WebhookDeliveryRow(Base):
    """One event on its way to one webhook. ``seq`` orders the deliveries of a (webhook, room):
    only the oldest pending one of each is sent."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "webhook_id", "room_id", "state", "seq"),
        Index("ix_webhook_deliveries_log", "webhook_id", "seq"),
    )

    #: Allocated in commit order for one room (its reports are applied one after another).
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(40))
    room_id: Mapped[str] = mapped_column(String(32))
    state: Mapped[DeliveryState] = mapped_column(db.StrEnumColumn(DeliveryState, 16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    #: The retry period runs from here (the creation, or the latest redelivery).
    retry_from: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    #: A worker that claimed the delivery holds it until then (it is sent by one worker at a time).
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    lease_token: Mapped[str | None] = mapped_column(String(32), default=None)
    last_status_code: Mapped[int] = mapped_column(Integer, default=0)
    last_latency: Mapped[float] = mapped_column(Float, default=0.0)
    last_error: Mapped[str] = mapped_column(String(500), default="")
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Tells the unit of work to insert the event before its deliveries.
    event_row: Mapped[WebhookEventRow] = relationship(lazy="raise")


class RecordingRow(Base):
    """A recording of a room (``rooms/{room}/recordings/{recording}``); its id is also its
    egress's id (``egresses/{id}``), so a start sent again is not run twice."""

    __tablename__ = "recordings"
    __table_args__ = (
        # At most one recording initiated or active per room, whatever races: the database says.
        Index(
            "uq_recordings_room_running",
            "room_id",
            unique=True,
            sqlite_where=_RUNNING_SQL,
            postgresql_where=_RUNNING_SQL,
        ),
        Index("ix_recordings_room_created", "room_id", "created_at"),
        Index("ix_recordings_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    room_id: Mapped[str] = mapped_column(ForeignKey("rooms.id", ondelete="CASCADE"))
    mode: Mapped[RecordingMode] = mapped_column(db.StrEnumColumn(RecordingMode, 24))
    language: Mapped[str] = mapped_column(String(3), default="")
    transcribe: Mapped[bool] = mapped_column(Boolean, default=False)
    collect_metadata: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[RecordingState] = mapped_column(db.StrEnumColumn(RecordingState, 24))
    #: Why it failed: a gRPC status code (0: no error) and message.
    error_code: Mapped[int] = mapped_column(Integer, default=0)
    error_message: Mapped[str] = mapped_column(String(1000), default="")
    #: ``egresses/{id}``.
    egress: Mapped[str] = mapped_column(String(64), unique=True)
    #: ``users/{id}`` or ``apiKeys/{id}``.
    creator: Mapped[str] = mapped_column(String(100))
    #: The file as the egress reported it (``file_key`` is the object key, or the path under
    #: the recordings folder; ``file_bucket`` is empty for a folder).
    file_content_type: Mapped[str] = mapped_column(String(64), default="")
    file_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    file_duration_ms: Mapped[int] = mapped_column(BigInteger, default=0)
    file_location: Mapped[str] = mapped_column(String(1100), default="")
    file_key: Mapped[str] = mapped_column(String(1024), default="", index=True)
    file_bucket: Mapped[str] = mapped_column(String(63), default="")
    #: Its transcription and summary on the AI service, once asked for.
    transcription: Mapped[str] = mapped_column(String(100), default="")
    summary: Mapped[str] = mapped_column(String(100), default="")
    #: Each participant's own audio file (TRANSCRIPT recordings), as the egress reported them:
    #: ``{"identity", "name", "key", "bucket", "offset_ms"}``.
    participant_audio: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: Its metadata agent on the AI service, ``metadataAgents/{id}``, when one was started.
    metadata_agent: Mapped[str] = mapped_column(String(100), default="")
    #: The wall-clock time of the file's first media (its time 0), as the egress reported it:
    #: where the agent's timeline is placed in the file.
    file_media_start: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    saved_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime]
    #: When its egress last reported; the reaper fails recordings whose egress went silent.
    last_report_at: Mapped[datetime | None] = mapped_column(default=None)
    #: Whether the egress reported a final status (its file is complete, or it never will be).
    egress_final: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The storage said the file was written before the egress said it was complete.
    stored_early: Mapped[bool] = mapped_column(Boolean, default=False)
    #: The follow-up of a saved recording (its transcription, then its summary): the control
    #: process that holds it (a random id per run) and until when; the holder renews it while
    #: it works, and a lapsed one (that process died, or is waiting to retry) may be taken.
    followup_owner: Mapped[str] = mapped_column(String(32), default="")
    followup_until: Mapped[datetime | None] = mapped_column(default=None)
