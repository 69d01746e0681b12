"""The server kit every Parley gRPC service (control, sfu, ai, egress) is built from, so that
none of them copies it:

* errors: ``ServiceError`` and its subclasses, answered as ``google.rpc.Status`` with an
  ``ErrorInfo`` (and field violations for INVALID_ARGUMENT);
* one interceptor chain (``standard_interceptors``): tracing, metrics, a log line per call,
  errors, protovalidate validation, authentication; public and chainable (``ServerInterceptor``);
* one server base (``GrpcServer``): health, reflection, bind in ``start()``, ``async with``,
  ``/metrics`` (with other processes' metrics through ``add_metrics_source``), and ``serve()``
  draining on SIGTERM / SIGINT; ``run_service`` for ``__main__`` (of a ``Service``);
* ``ControlAuthenticator``: services other than control learn who calls them by asking
  control;
* one settings loader (``EnvSpec``, ``ConfigurationError``);
* one page-token codec; logging with context (``log_context``, JSON lines);
* ``EnumNames``: a contract enum's short names both ways, read from its descriptor (the
  domains' ``StrEnum`` columns map to the contracts through it);
* ``parley.server.db`` (imported on its own): engine, sessions, Alembic migrations.

It ships in the SDK's ``parley[server]`` extra; the plain SDK never imports it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable
from typing import Protocol

from parley._enums import EnumNames

from ._base import GrpcServer, stop_signals
from ._control_auth import ControlAuthenticator, RemoteCaller
from ._errors import (
    ERROR_DOMAIN,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    ServiceError,
    Unauthenticated,
    Unavailable,
    error_status,
    field_violations,
    status_message,
    to_status,
    to_status_message,
    validate,
)
from ._interceptors import (
    AuthenticationInterceptor,
    CallInput,
    ErrorInterceptor,
    InterceptorChain,
    LoggingInterceptor,
    MetricsInterceptor,
    ServerInterceptor,
    TracingInterceptor,
    ValidationInterceptor,
    standard_interceptors,
)
from ._logging import JsonFormatter, bind_log_context, configure_logging, log_context
from ._metrics import (
    METRICS_CONTENT_TYPE,
    MetricsEndpoint,
    MetricsSource,
    add_metrics_source,
    metrics_text,
    remove_metrics_source,
)
from ._pagination import DEFAULT_PAGE_SIZE, decode_page_token, encode_page_token, page_size
from ._settings import ConfigurationError, EnvSpec, parse_value
from ._tracing import configure_tracing, inject_trace_context

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "ERROR_DOMAIN",
    "METRICS_CONTENT_TYPE",
    "AlreadyExists",
    "AuthenticationInterceptor",
    "CallInput",
    "ConfigurationError",
    "ControlAuthenticator",
    "EnumNames",
    "EnvSpec",
    "ErrorInterceptor",
    "FailedPrecondition",
    "GrpcServer",
    "InterceptorChain",
    "InvalidArgument",
    "JsonFormatter",
    "LoggingInterceptor",
    "MetricsEndpoint",
    "MetricsInterceptor",
    "MetricsSource",
    "NotFound",
    "PermissionDenied",
    "RemoteCaller",
    "ResourceExhausted",
    "ServerInterceptor",
    "Service",
    "ServiceError",
    "TracingInterceptor",
    "Unauthenticated",
    "Unavailable",
    "ValidationInterceptor",
    "add_metrics_source",
    "bind_log_context",
    "configure_logging",
    "configure_tracing",
    "decode_page_token",
    "encode_page_token",
    "error_status",
    "field_violations",
    "inject_trace_context",
    "log_context",
    "metrics_text",
    "page_size",
    "parse_value",
    "remove_metrics_source",
    "run_service",
    "standard_interceptors",
    "status_message",
    "stop_signals",
    "to_status",
    "to_status_message",
    "validate",
]


class Service(Protocol):
    """What ``run_service`` serves: a ``GrpcServer``, or a supervisor of several (the SFU's
    workers)."""

    grace: float

    async def serve(self) -> None: ...


def run_service(name: str, make_server: Callable[[], Service]) -> None:
    """The body of a service's ``python -m``: logging and tracing from the environment, the
    server made (settings read) and served until SIGTERM / SIGINT, then given
    ``PARLEY_SHUTDOWN_GRACE`` seconds (default 5) to drain. A configuration error is one clear
    line and exit status 2, not a traceback."""
    configure_logging()
    configure_tracing(name)

    async def main() -> None:
        server = make_server()
        grace = os.environ.get("PARLEY_SHUTDOWN_GRACE")
        if grace:
            try:
                server.grace = float(grace)
            except ValueError:
                raise ConfigurationError(f"PARLEY_SHUTDOWN_GRACE: not a number of seconds: {grace!r}") from None
        await server.serve()

    try:
        asyncio.run(main())
    except ConfigurationError as error:
        logging.getLogger("parley.server").debug("configuration error", exc_info=True)
        print(f"{name}: configuration error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
