"""Prometheus metrics of a Parley process, served as text on ``/metrics``.

Every metric lives in prometheus-client's process-wide registry: a process that runs several
services (``parley up``) answers for all of them on one endpoint. The RPC metrics are defined
here; each service defines its own beside its code (``parley_sfu_*``, ``parley_ai_*``,
``parley_http_*``).
"""

from __future__ import annotations

import logging
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest, start_http_server

log = logging.getLogger("parley.server")

__all__ = ["METRICS_CONTENT_TYPE", "RPC_DURATION", "RPC_TOTAL", "MetricsEndpoint", "metrics_text"]

RPC_TOTAL = Counter(
    "parley_rpc_requests", "gRPC calls served, by service, method and status code.", ("service", "method", "code")
)
RPC_DURATION = Histogram(
    "parley_rpc_duration_seconds",
    "Time to serve a gRPC call (a streaming call: its whole life), by service and method.",
    ("service", "method"),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


def metrics_text() -> bytes:
    """The process's metrics in the Prometheus text format (for an HTTP route of one's own)."""
    return generate_latest(REGISTRY)


class MetricsEndpoint:
    """An HTTP server on its own thread answering ``GET /metrics``; ``address`` ``host:0``
    picks a free port."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    def start(self) -> None:
        host, _, port = self.address.rpartition(":")
        self._server, self._thread = start_http_server(int(port), addr=host or "0.0.0.0")
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", host or "0.0.0.0", self.port)

    @property
    def url(self) -> str:
        host = self.address.rpartition(":")[0] or "127.0.0.1"
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{self.port}/metrics"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
