"""Prometheus metrics of a Parley process, served as text on ``/metrics``.

Every metric lives in prometheus-client's process-wide registry: a process that runs several
services (``parley up``) answers for all of them on one endpoint. The RPC metrics are defined
here; each service defines its own beside its code (``parley_sfu_*``, ``parley_ai_*``,
``parley_http_*``). A process that supervises others (the SFU's workers) adds their metrics
with ``add_metrics_source``: the endpoint answers for them too, families of one name merged
(the text format allows each name once).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import REGISTRY, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import Metric

log = logging.getLogger("parley.server")

__all__ = [
    "METRICS_CONTENT_TYPE",
    "RPC_DURATION",
    "RPC_TOTAL",
    "MetricsEndpoint",
    "MetricsSource",
    "add_metrics_source",
    "metrics_text",
    "remove_metrics_source",
]

RPC_TOTAL = Counter(
    "parley_rpc_requests", "gRPC calls served, by service, method and status code.", ("service", "method", "code")
)
RPC_DURATION = Histogram(
    "parley_rpc_duration_seconds",
    "Time to serve a gRPC call (a streaming call: its whole life), by service and method.",
    ("service", "method"),
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


#: Metric families of other processes this one answers for, read when scraped.
MetricsSource = Callable[[], Iterable[Metric]]
_SOURCES: list[MetricsSource] = []


def add_metrics_source(source: MetricsSource) -> None:
    """Answers for ``source``'s families too (called on every scrape, from any thread)."""
    _SOURCES.append(source)


def remove_metrics_source(source: MetricsSource) -> None:
    if source in _SOURCES:
        _SOURCES.remove(source)


class _Exposition:
    """The process's registry and the added sources, as one collector."""

    def collect(self) -> Iterator[Metric]:
        families = {family.name: family for family in REGISTRY.collect()}
        for source in list(_SOURCES):
            try:
                added = list(source())
            except Exception:  # one source failing must not take the endpoint down
                log.warning("a metrics source failed", exc_info=True)
                continue
            for family in added:
                mine = families.get(family.name)
                if mine is None:
                    families[family.name] = family
                elif mine.type == family.type:
                    merged = Metric(mine.name, mine.documentation, mine.type, mine.unit)
                    merged.samples = [*mine.samples, *family.samples]
                    families[family.name] = merged
                else:
                    log.debug("metric %s is a %s here and a %s in a source", family.name, mine.type, family.type)
        return iter(families.values())


_EXPOSITION = _Exposition()


def metrics_text() -> bytes:
    """The process's metrics (and its sources') in the Prometheus text format (for an HTTP
    route of one's own; a source may read other processes: call it off the event loop)."""
    return generate_latest(_EXPOSITION)


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
        self._server, self._thread = start_http_server(
            int(port),
            addr=host or "0.0.0.0",
            registry=_EXPOSITION,
        )
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
