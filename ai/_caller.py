"""Who is calling: the caller the server's authentication interceptor resolved through
control for the RPC being served."""

from __future__ import annotations

import contextvars

from ._auth import Caller
from ._errors import Unauthenticated

CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("parley_ai_caller", default=None)


def current_caller() -> Caller:
    caller = CALLER.get()
    if caller is None:  # pragma: no cover - the interceptor always sets it
        raise Unauthenticated("credentials required")
    return caller


def describe(caller: Caller | None) -> str:
    return caller.owner if caller else "anonymous"
