"""Who is calling: the principal the server's authentication interceptor found for the RPC
being served, for the servicers to read."""

from __future__ import annotations

import contextvars

from ._auth import ANONYMOUS, Principal

CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("parley_control_caller", default=ANONYMOUS)


def current_caller() -> Principal:
    """The authenticated caller of the RPC being served."""
    return CALLER.get()


def describe(caller: Principal) -> str:
    """How a caller appears in the log line of each call."""
    return caller.user_id or caller.api_key_id or caller.kind
