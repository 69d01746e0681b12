"""Database tables. Schema changes go through Alembic migrations (control/migrations)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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
