"""The AI service's tables (prefixed ``ai_``, with their own Alembic version table, so they
may share a database with control). Schema changes go through ai/migrations."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, Index, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from parley.server.db import StrEnumColumn


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class JobState(StrEnum):
    """Where a job stands, as its ``state`` column stores it: the ``parley.ai.v1.JobState``
    value's name less ``JOB_STATE_`` (the mapper pairs the two through EnumNames)."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


#: The states a job does not leave.
ENDED = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class JobColumns:
    """What transcriptions and summaries have in common."""

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    #: ``users/{id}`` or ``apiKeys/{id}``.
    owner: Mapped[str] = mapped_column(String(120))
    state: Mapped[JobState] = mapped_column(StrEnumColumn(JobState, 16))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    #: For FAILED: the gRPC code's name (``grpc.StatusCode.X.name``), a reason and a message for people.
    error_code: Mapped[str] = mapped_column(String(32), default="")
    error_reason: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    language: Mapped[str] = mapped_column(String(8), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)


class UploadRow(Base):
    __tablename__ = "ai_uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(120))
    filename: Mapped[str] = mapped_column(String(255), default="")
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime]


class TranscriptionRow(JobColumns, Base):
    __tablename__ = "ai_transcriptions"
    __table_args__ = (Index("ix_ai_transcriptions_owner_created", "owner", "created_at"),)

    #: ``s3`` (bucket + key), ``upload`` (upload_id) or ``tracks`` (speaker_tracks).
    source_kind: Mapped[str] = mapped_column(String(8))
    s3_bucket: Mapped[str] = mapped_column(String(63), default="")
    s3_key: Mapped[str] = mapped_column(String(1024), default="")
    upload_id: Mapped[str] = mapped_column(String(32), default="")
    model: Mapped[str] = mapped_column(String(63), default="")
    #: ``[[speaker, start, end], ...]`` in seconds.
    speaker_timeline: Mapped[list[Any]] = mapped_column(JSON, default=list)
    #: One file per speaker: ``{"speaker", "offset" (seconds), "s3_bucket", "s3_key", "upload_id"}``.
    speaker_tracks: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    #: Words transcription is primed with (names, the meeting's title).
    vocabulary: Mapped[str] = mapped_column(String(500), default="")
    detected_language: Mapped[str] = mapped_column(String(8), default="")
    duration_seconds: Mapped[float | None] = mapped_column(Float, default=None)
    #: Storage key of the transcript (JSON) once succeeded.
    result_key: Mapped[str] = mapped_column(String(200), default="")


class SummaryRow(JobColumns, Base):
    __tablename__ = "ai_summaries"
    __table_args__ = (Index("ix_ai_summaries_owner_created", "owner", "created_at"),)

    transcription_id: Mapped[str] = mapped_column(String(32), default="")
    source_text: Mapped[str] = mapped_column(Text, default="")
    markdown: Mapped[str] = mapped_column(Text, default="")
    engine: Mapped[str] = mapped_column(String(200), default="")
    #: ``Minutes.to_dict()`` once succeeded; None for summaries written before minutes existed.
    minutes: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class MetadataAgentRow(Base):
    """A metadata agent (``ai._agents``): RUNNING while in its room, then SUCCEEDED with its
    timeline in storage (``timeline_key``), or FAILED."""

    __tablename__ = "ai_metadata_agents"
    __table_args__ = (Index("ix_ai_metadata_agents_state", "state"),)

    #: The ``agent_id`` it was started with (control passes the recording's id).
    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    #: ``users/{id}`` or ``apiKeys/{id}``.
    owner: Mapped[str] = mapped_column(String(120))
    #: ``rooms/{room}``.
    room: Mapped[str] = mapped_column(String(80))
    state: Mapped[JobState] = mapped_column(StrEnumColumn(JobState, 16))
    #: For FAILED, as for jobs: the gRPC code's name, a reason and a message for people.
    error_code: Mapped[str] = mapped_column(String(32), default="")
    error_reason: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    #: Storage key of the timeline (JSON, ``ai._agent_timeline``) once it succeeded.
    timeline_key: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
