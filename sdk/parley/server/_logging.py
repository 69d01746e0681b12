"""Logging of a Parley process: text or JSON lines (``PARLEY_LOG_FORMAT=json``), at
``PARLEY_LOG_LEVEL``, each record carrying the context of the work it belongs to (room,
participant, job...) from a context variable, so code deep in a call logs plainly and the
line still says whose it is.

    with log_context(room="abc", participant="alice"):
        log.info("track published")   # ... track published room=abc participant=alice
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from types import MappingProxyType

__all__ = ["JsonFormatter", "bind_log_context", "configure_logging", "log_context"]

_NO_CONTEXT: Mapping[str, str] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("parley_log_context", default=_NO_CONTEXT)
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s%(context_text)s"


@contextmanager
def log_context(**fields: str) -> Iterator[None]:
    """Adds ``fields`` to every record logged inside the block (and in tasks it starts)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind_log_context(**fields: str) -> None:
    """Adds ``fields`` to the records of the current task from now on (a task's own context
    ends with it)."""
    _CONTEXT.set({**_CONTEXT.get(), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        record.context = context
        record.context_text = "".join(f" {k}={v}" for k, v in context.items())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the context fields, and the
    traceback of an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure_logging(
    level: str | int | None = None, *, format: str | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Sets up the root logger of a service process: ``level`` else ``PARLEY_LOG_LEVEL`` (INFO
    logs one line per call), ``format`` (``text`` or ``json``) else ``PARLEY_LOG_FORMAT``."""
    env = os.environ if env is None else env
    level = level if level is not None else env.get("PARLEY_LOG_LEVEL", "INFO").upper()
    format = (format or env.get("PARLEY_LOG_FORMAT", "text")).lower()
    if format not in ("text", "json"):
        raise ValueError(f"PARLEY_LOG_FORMAT must be text or json, not {format!r}")
    handler = logging.StreamHandler()
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if format == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # aioice logs every candidate pair at INFO.
    logging.getLogger("aioice").setLevel(max(logging.WARNING, root.level))
