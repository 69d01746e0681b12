"""Runs the gateway app with uvicorn inside the caller's event loop."""

from __future__ import annotations

import asyncio
import logging
import socket
from types import TracebackType

import uvicorn

from ._app import AuthRoutes, create_app
from ._oidc_login import oidc_routes
from ._openapi import docs_routes
from ._settings import GatewaySettings

log = logging.getLogger(__name__)


class GatewayServer:
    """``async with GatewayServer(settings) as gw:``; ``gw.url`` is where it listens (port 0
    picks a free one)."""

    def __init__(
        self,
        settings: GatewaySettings,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_routes: list[AuthRoutes] | None = None,
    ) -> None:
        self.settings = settings
        # The docs and the browser login (when an identity provider is configured) are part of
        # every gateway; tests pass their own list.
        routes: list[AuthRoutes] = [docs_routes, oidc_routes] if extra_routes is None else extra_routes
        self.app = create_app(settings, extra_routes=routes)
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says TCP, else every kept-alive response waits ~40 ms for a delayed ACK.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            http="httptools",
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises the start-up error
                raise RuntimeError("the gateway stopped during start-up")
            await asyncio.sleep(0.01)
        log.info("gateway listening on %s", self.url)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        self._socket.close()

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
