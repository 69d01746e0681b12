"""One gRPC server base for every Parley service: health and reflection, the interceptor
chain, binding in ``start()``, ``target``, ``async with``, an optional ``/metrics`` endpoint,
and ``serve()``, which runs until SIGTERM or SIGINT and then drains.

Shutdown order (``stop``): health turns NOT_SERVING (load balancers stop sending), the service
says goodbye (``draining``: the SFU tells each participant the server is shutting down), calls
in flight get ``grace`` seconds to finish, and then the service closes what it holds
(``stopped``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ._health import HealthService
from ._interceptors import InterceptorChain, ServerInterceptor
from ._metrics import MetricsEndpoint

log = logging.getLogger("parley.server")

__all__ = ["GrpcServer", "stop_signals"]


@contextlib.contextmanager
def stop_signals(
    *signals: signal.Signals, received: asyncio.Future[signal.Signals] | None = None
) -> Iterator[asyncio.Future[signal.Signals]]:
    """Catches ``signals`` (default SIGTERM and SIGINT) while the block runs: the future
    (``received``, or a new one) completes with the first one. Enter it before starting
    servers, so that a signal sent as soon as they listen stops them instead of killing the
    process."""
    signals = signals or (signal.SIGTERM, signal.SIGINT)
    loop = asyncio.get_running_loop()
    received = received if received is not None else loop.create_future()

    def receive(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in signals:
        loop.add_signal_handler(sig, receive, sig)
    try:
        yield received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


class GrpcServer:
    """A Parley gRPC service on one port. Subclasses name themselves (``name``), register their
    servicers (``register``) and may hook into the lifecycle (``prepare``, ``started``,
    ``draining``, ``stopped``); they copy none of this.

    Use as ``async with Service(...) as server:`` (``server.target`` is where it listens; port 0
    picks a free one), or ``await server.serve()`` in a service's ``__main__``.
    """

    #: The service's name in logs (``control``, ``sfu``...).
    name = "parley"

    def __init__(
        self,
        address: str,
        *,
        interceptors: Sequence[ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        metrics_address: str = "",
        grace: float = 5.0,
    ) -> None:
        self.address = address
        self.grace = grace
        self.port = 0
        self.metrics = MetricsEndpoint(metrics_address) if metrics_address else None
        self._interceptors = tuple(interceptors)
        self._options = tuple(options)
        self._health = HealthService()
        self._server: grpc.aio.Server | None = None
        self._service_names: tuple[str, ...] = ()
        self._stopped = False

    # Hooks -------------------------------------------------------------------------------

    def register(self, server: grpc.aio.Server) -> Sequence[str]:
        """Adds the service's servicers to ``server``; returns their full names."""
        raise NotImplementedError

    async def prepare(self) -> None:
        """Runs before the server is made (migrations, runtimes it spawns processes from)."""

    async def started(self) -> None:
        """Runs once the server listens, before health says SERVING."""

    async def draining(self) -> None:
        """Runs when stopping, after health says NOT_SERVING and before calls are drained."""

    async def stopped(self) -> None:
        """Runs once no call is left: close what the service holds."""

    # Lifecycle ---------------------------------------------------------------------------

    async def start(self) -> int:
        """Prepares, binds and starts serving; returns the port. A taken port raises
        RuntimeError."""
        await self.prepare()
        self._server = server = grpc.aio.server(
            interceptors=[InterceptorChain(self._interceptors)] if self._interceptors else None,
            options=self._options,
        )
        self._service_names = tuple(self.register(server))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*self._service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        self.port = server.add_insecure_port(self.address)
        await server.start()
        await self.started()
        for name in (*self._service_names, ""):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if self.metrics is not None:
            self.metrics.start()
        log.info("%s listening on %s", self.name, self.target)
        return self.port

    @property
    def target(self) -> str:
        """``host:port`` where the server listens."""
        return f"{self.address.rsplit(':', 1)[0]}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stops serving (see the module docstring for the order); safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.grace if grace is None else grace
        await self._health.enter_graceful_shutdown()
        try:
            await self.draining()
        finally:
            if self._server is not None:
                await self._server.stop(grace)
            try:
                await self.stopped()
            finally:
                if self.metrics is not None:
                    self.metrics.stop()
        log.info("%s stopped", self.name)

    async def wait_for_termination(self) -> None:
        assert self._server is not None, "start the server first"
        await self._server.wait_for_termination()

    async def serve(self) -> None:
        """Serves until SIGTERM or SIGINT, then stops gracefully."""
        with stop_signals() as stop:
            async with self:
                # A runtime started with the server (Ray installs its own SIGTERM handler) may
                # have replaced ours: put them back.
                with stop_signals(received=stop):
                    received = await stop
                log.info("%s: %s received, draining (grace %.0f s)", self.name, received.name, self.grace)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop(grace=0)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
