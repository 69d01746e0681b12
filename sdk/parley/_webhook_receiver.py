"""A webhook receiver for tests: a small HTTP/1.1 server (asyncio streams, keep-alive) that
checks each delivery's signature with :func:`parley.verify_webhook` and keeps the events, and
that can be told to fail calls or to go down (refuse connections) and come back on its port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._errors import InvalidTokenError
from ._webhooks import WEBHOOK_CONTENT_TYPE, verify_webhook

__all__ = ["ReceivedEvent", "WebhookReceiver"]

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Payload Too Large"}
_MAX_BODY = 1 << 20


@dataclass(frozen=True)
class ReceivedEvent:
    """A delivery the receiver accepted: its verified event and when it arrived
    (``time.time()``)."""

    event: dict[str, Any]
    received_at: float

    @property
    def id(self) -> str:
        return str(self.event["id"])

    @property
    def type(self) -> str:
        return str(self.event["event"])


class WebhookReceiver:
    """Receives webhooks on ``url`` (``http://127.0.0.1:<port>/webhook``).

    Deliveries whose signature checks out against ``secrets`` (key id → secret; add to it once
    the webhook exists) are answered 200 and kept in ``events``, in arrival order; others get
    401. ``fail_next(n)`` answers the next ``n`` calls with an error instead, ``down()`` stops
    listening (callers get "connection refused") and ``up()`` listens again on the same port.
    ``calls`` counts every request, answered or not.
    """

    def __init__(self, secrets: Mapping[str, str] | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.secrets: dict[str, str] = dict(secrets or {})
        self.host = host
        self.port = port
        self.events: list[ReceivedEvent] = []
        self.calls = 0
        self.rejected = 0
        self._fail: list[int] = []
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}
        self._changed = asyncio.Event()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/webhook"

    async def __aenter__(self) -> WebhookReceiver:
        await self.up()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.down()

    async def up(self) -> None:
        """Listens (again) on ``port``; the first call picks a free one."""
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
            self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Stops listening and drops the open connections."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._connections.values())
        for writer, task in list(self._connections.items()):
            writer.close()
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(Exception):
                await server.wait_closed()

    def fail_next(self, count: int, *, status: int = 503) -> None:
        """Answers the next ``count`` calls with ``status`` (and keeps nothing of them)."""
        self._fail.extend([status] * count)

    def stop_failing(self) -> None:
        """Answers normally again (drops what ``fail_next`` still had to fail)."""
        self._fail.clear()

    def event_ids(self) -> list[str]:
        return [received.id for received in self.events]

    async def wait_for(self, condition: Callable[[WebhookReceiver], bool], *, seconds: float = 30.0) -> None:
        """Waits until ``condition(self)`` holds; TimeoutError after ``seconds``."""
        async with asyncio.timeout(seconds):
            while not condition(self):
                self._changed.clear()
                await self._changed.wait()

    async def wait_for_events(self, count: int, *, seconds: float = 30.0) -> list[ReceivedEvent]:
        """Waits until at least ``count`` events have arrived (TimeoutError after ``seconds``);
        returns them all."""
        await self.wait_for(lambda receiver: len(receiver.events) >= count, seconds=seconds)
        return self.events

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[writer] = task
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # ``down()`` ends the connection. The task must not end cancelled: Python 3.11's
            # stream server logs a cancelled connection task as an error.
            pass
        finally:
            self._connections.pop(writer, None)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serves one request; False when the connection is over."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method = lines[0].split(" ")[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if length > _MAX_BODY:
            await self._answer(writer, 413, close=True)
            return False
        body = await reader.readexactly(length)
        self.calls += 1
        status = self._handle(method, headers, body)
        keep_alive = headers.get("connection", "").lower() != "close"
        await self._answer(writer, status, close=not keep_alive)
        self._changed.set()
        return keep_alive and self._server is not None

    def _handle(self, method: str, headers: Mapping[str, str], body: bytes) -> int:
        if self._fail:
            return self._fail.pop(0)
        if method != "POST" or headers.get("content-type") != WEBHOOK_CONTENT_TYPE:
            self.rejected += 1
            return 400
        try:
            event = verify_webhook(body, headers.get("authorization", ""), secrets=self.secrets)
        except InvalidTokenError:
            self.rejected += 1
            return 401
        self.events.append(ReceivedEvent(event, time.time()))
        return 200

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, *, close: bool) -> None:
        reason = _REASONS.get(status, "Error")
        connection = "close" if close else "keep-alive"
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: {connection}\r\n\r\n".encode())
        await writer.drain()
