"""The database of a Parley service: one engine (PostgreSQL through psycopg 3, or SQLite),
read and write session factories, and Alembic migrations with a version table per service (so
several services may share one PostgreSQL database).

Imported on its own (``from parley.server import db``): it needs SQLAlchemy and Alembic, which
only services install (``parley[server]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Dialect, String, event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.types import TypeDecorator

__all__ = ["DATABASE_SCHEMES", "Sessions", "StrEnumColumn", "async_url", "create_engine", "migrate", "sessions"]

E = TypeVar("E", bound=StrEnum)

#: The URL schemes a service's ``database_url`` may use.
DATABASE_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///", "sqlite+aiosqlite:///")


def async_url(url: str) -> str:
    """Maps plain ``postgresql://`` / ``sqlite:///`` URLs to their async drivers."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url.removeprefix("sqlite:///")
    return url


def create_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20, **kwargs: Any) -> AsyncEngine:
    """The engine of ``url``. SQLite gets foreign keys enforced, WAL (readers go on while one
    writer writes), a busy timeout, and ``BEGIN IMMEDIATE`` for write sessions."""
    url = async_url(url)
    if not url.startswith("sqlite"):
        return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, **kwargs)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (the driver would run SELECTs
        # outside any), so the BEGIN below covers every statement of a unit of work.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        # SQLite has no SELECT ... FOR UPDATE: taking the write lock at BEGIN serialises
        # check-then-write rules (last owner, etags, job claims) as row locks do on PostgreSQL.
        # Reads (no parley_write option) begin normally and stay concurrent.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("parley_write") else "BEGIN")

    return engine


@dataclass(frozen=True)
class Sessions:
    """Session factories of one database: ``reads`` for transactions that only read,
    ``writes`` for those that may write (on SQLite they take the write lock at BEGIN)."""

    reads: async_sessionmaker[AsyncSession]
    writes: async_sessionmaker[AsyncSession]


def sessions(engine: AsyncEngine) -> Sessions:
    writer = engine.execution_options(parley_write=True)
    return Sessions(
        reads=async_sessionmaker(engine, expire_on_commit=False),
        writes=async_sessionmaker(writer, expire_on_commit=False),
    )


async def migrate(engine: AsyncEngine, migrations: Path, *, version_table: str) -> None:
    """Brings the schema to the newest migration of the ``migrations`` folder, recording the
    revision in the service's own ``version_table``."""

    def upgrade(connection: Connection) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrations))
        config.attributes["connection"] = connection
        config.attributes["version_table"] = version_table
        command.upgrade(config, "head")

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)


class StrEnumColumn(TypeDecorator[E]):
    """A ``StrEnum`` kept in a plain string column as its value (``"owner"``, ``"PENDING"``):
    the schema is a ``VARCHAR`` (no database enum type, no CHECK), code writes and reads the
    members, and a string that is not a member's value is refused before it reaches the
    database (``ValueError``)."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else str(self.enum(value).value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)
