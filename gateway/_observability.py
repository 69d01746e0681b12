"""The gateway's metrics and traces: ``parley_http_*`` by route and status, ``GET /metrics``
(the process's Prometheus registry), and a server span per HTTP request whose W3C trace
context travels on to control and the AI service in the gRPC metadata."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Histogram
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from parley.server import METRICS_CONTENT_TYPE, inject_trace_context, metrics_text

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

HTTP_TOTAL = Counter(
    "parley_http_requests", "HTTP requests answered by the gateway, by route and status.", ("route", "status")
)
HTTP_DURATION = Histogram(
    "parley_http_request_duration_seconds",
    "Time to answer an HTTP request (a streamed one: until its last byte), by route.",
    ("route",),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
_tracer = trace.get_tracer("parley.gateway")


def set_route(request: Request, route: str) -> None:
    """Names the request's route (``POST /v1/{name=rooms/*}:join``) in its metrics and span."""
    request.state.route = route


def _route(scope: Scope) -> str:
    named = scope.get("state", {}).get("route")
    if named:
        return str(named)
    # Everything not transcoded, by its first path segment: bounded label values.
    first = str(scope.get("path", "/")).split("/", 2)[1]
    return (
        f"{scope.get('method', 'GET')} /{first}" if first in ("auth", "api", "metrics", "healthz", "v1") else "static"
    )


class HttpObservability:
    """ASGI middleware: a server span and the ``parley_http_*`` metrics per HTTP request."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
        parent = propagate.extract(headers) if "traceparent" in headers else None

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with _tracer.start_as_current_span(
            f"HTTP {scope.get('method', '')}", context=parent, kind=SpanKind.SERVER
        ) as span:
            try:
                await self.app(scope, receive, send_observed)
            finally:
                route = _route(scope)
                HTTP_TOTAL.labels(route, str(status)).inc()
                HTTP_DURATION.labels(route).observe(time.perf_counter() - started)
                span.update_name(route)
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


async def metrics(_request: Request) -> Response:
    """``GET /metrics``: this process's metrics in the Prometheus text format (and those of the
    SFU workers ``parley up`` supervises, which are read over HTTP: off the event loop)."""
    return Response(await run_in_threadpool(metrics_text), media_type=METRICS_CONTENT_TYPE)


def grpc_metadata(authorization: str) -> tuple[tuple[str, str], ...]:
    """The metadata of a call to a backend: the caller's credentials and the trace context."""
    metadata: list[tuple[str, str]] = [("authorization", authorization)] if authorization else []
    inject_trace_context(metadata)
    return tuple(metadata)
