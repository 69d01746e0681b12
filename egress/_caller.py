"""Who is calling: the caller the server's authentication interceptor resolved through
control for the RPC being served."""

from __future__ import annotations

import contextvars

from parley.server import RemoteCaller

from ._errors import Unauthenticated

CALLER: contextvars.ContextVar[RemoteCaller | None] = contextvars.ContextVar("parley_egress_caller", default=None)


def current_caller() -> RemoteCaller:
    caller = CALLER.get()
    if caller is None:  # pragma: no cover - the interceptor always sets it
        raise Unauthenticated("credentials required")
    return caller


def describe(caller: RemoteCaller | None) -> str:
    return caller.owner if caller else "anonymous"
