"""The health service: grpc's, except that its Watch streams end when the server shuts down.

grpc's ``HealthServicer.Watch`` never returns: at a graceful shutdown it sends NOT_SERVING and
keeps the stream open, so the server's grace period always runs out on it and grpc then cancels
the handler (and may log the CancelledError as an unhandled exception). Here a watch sends its
last status, NOT_SERVING, and ends with OK.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from grpc_health.v1 import health, health_pb2

_FINAL = (health_pb2.HealthCheckResponse.NOT_SERVING, health_pb2.HealthCheckResponse.SERVICE_UNKNOWN)

#: How long a watch may take to send NOT_SERVING once the shutdown has begun.
FINAL_STATUS_SECONDS = 1.0


class _SentStatuses:
    """A Watch call's context that remembers the statuses written to it."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.final = asyncio.Event()

    async def write(self, message: health_pb2.HealthCheckResponse) -> None:
        await self._context.write(message)
        if message.status in _FINAL:
            self.final.set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


class HealthService(health.aio.HealthServicer):
    """grpc's asyncio health servicer whose Watch streams end at ``enter_graceful_shutdown``."""

    def __init__(self) -> None:
        super().__init__()
        self._shutdown = asyncio.Event()

    async def enter_graceful_shutdown(self) -> None:
        await super().enter_graceful_shutdown()
        self._shutdown.set()

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        sent = _SentStatuses(context)
        # The wrapper stands in for the context: it only adds to ``write``.
        watch = asyncio.ensure_future(super().Watch(request, sent))  # type: ignore[arg-type]
        shutdown = asyncio.ensure_future(self._shutdown.wait())
        try:
            await asyncio.wait({watch, shutdown}, return_when=asyncio.FIRST_COMPLETED)
            if shutdown.done() and not watch.done():
                # The watcher sends NOT_SERVING once it wakes up: let it, then end the stream.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sent.final.wait(), FINAL_STATUS_SECONDS)
        finally:
            for task in (watch, shutdown):
                task.cancel()
            await asyncio.gather(watch, shutdown, return_exceptions=True)
