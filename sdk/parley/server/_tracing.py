"""OpenTelemetry tracing across Parley's services: W3C trace context travels in gRPC metadata
(``traceparent``), each service opens a server span per call, and spans are exported over OTLP
when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set. Without a configured provider the OpenTelemetry
API is a no-op, so tracing costs next to nothing when it is off."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, MutableSequence
from contextlib import contextmanager
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

log = logging.getLogger("parley.server")

__all__ = ["configure_tracing", "inject_trace_context", "server_span"]

_tracer = trace.get_tracer("parley.server")
_configured = False


def configure_tracing(service_name: str, env: Mapping[str, str] | None = None) -> bool:
    """Exports this process's spans over OTLP (HTTP) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is
    set; otherwise leaves tracing off. Once per process; True when exporting."""
    global _configured
    env = os.environ if env is None else env
    if _configured or not env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return _configured
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: env.get("OTEL_SERVICE_NAME", service_name)}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True
    log.info("exporting traces to %s", env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    return True


class _CallSpan:
    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def failed(self, code: grpc.StatusCode) -> None:
        self.span.set_attribute("rpc.grpc.status_code", code.value[0])
        self.span.set_status(Status(StatusCode.ERROR, code.name))


@contextmanager
def server_span(method: str, metadata: Mapping[str, str], *, current: bool = True) -> Iterator[_CallSpan]:
    """The span of one served call (``/pkg.Service/Method``), child of the caller's context;
    made the current span (the parent of the spans the handler starts) when ``current``.

    A streaming call's span is not made current: its handler is an async generator, which
    grpc may close from another task, where detaching the context it attached fails ("Failed
    to detach context", logged at every participant's leave)."""
    service, _, name = method[1:].rpartition("/")
    parent = propagate.extract(metadata) if "traceparent" in metadata else None
    options: dict[str, Any] = {
        "context": parent,
        "kind": SpanKind.SERVER,
        "attributes": {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
        "record_exception": False,
        "set_status_on_exception": False,
    }
    if current:
        with _tracer.start_as_current_span(f"{service}/{name}", **options) as span:
            yield _CallSpan(span)
        return
    detached = _tracer.start_span(f"{service}/{name}", **options)
    try:
        yield _CallSpan(detached)
    finally:
        detached.end()


def inject_trace_context(metadata: MutableSequence[tuple[str, str]]) -> None:
    """Adds the current span's W3C trace context to outgoing gRPC call metadata."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    metadata.extend(carrier.items())
