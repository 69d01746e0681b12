"""What every sub-client shares (``client.rooms``, ``client.transcriptions``, ...): the channel
and credentials its calls go over, failed calls raised as :class:`ParleyError` subclasses,
server streams, and pagers that follow ``next_page_token``.

The facade (``_client``) and the AI sub-clients (``_ai``) both build on this module; neither
imports the other's internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from ._errors import ParleyError

Resp = TypeVar("Resp")
#: gRPC call metadata: ``(key, value)`` pairs.
Metadata = tuple[tuple[str, str], ...]


def bearer_metadata(bearer: str) -> Metadata:
    """The metadata that carries ``bearer`` (an API key, an OIDC or dev-login token); none
    for anonymous calls."""
    return (("authorization", f"Bearer {bearer}"),) if bearer else ()


@dataclass(frozen=True)
class Connection:
    """One service's channel and the credentials sent with each call.

    Attributes:
        channel: The channel; ``None`` when the service is not configured.
        metadata: Sent with every call (the caller's credentials).
        missing: Why the channel is missing and how to configure it.
    """

    channel: grpc.aio.Channel | None
    metadata: Metadata = ()
    missing: str = "service not configured"

    def require(self) -> grpc.aio.Channel:
        """The channel, or a :class:`ParleyError` saying how to configure the service."""
        if self.channel is None:
            raise ParleyError(self.missing)
        return self.channel


class ServiceClient:
    """Base of the sub-clients: calls with the connection's credentials, errors translated."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @property
    def _metadata(self) -> Metadata:
        return self._connection.metadata

    async def _call(self, method: Callable[..., Awaitable[Resp]], request: Any) -> Resp:
        """One unary (or client-streaming: ``request`` an async iterator) call."""
        try:
            return await method(request, metadata=self._metadata)
        except grpc.aio.AioRpcError as error:
            raise ParleyError.from_rpc_error(error) from None

    async def _stream(self, method: Callable[..., Any], request: Any) -> AsyncIterator[Any]:
        """The messages of a server stream; errors as ParleyError; cancelled when left early."""
        call = method(request, metadata=self._metadata)
        try:
            async for item in call:
                yield item
        except grpc.aio.AioRpcError as error:
            raise ParleyError.from_rpc_error(error) from None
        finally:
            call.cancel()

    async def _pages(self, method: Callable[..., Awaitable[Any]], request: Any, items: str) -> AsyncIterator[Any]:
        """The items of every page, following ``next_page_token`` until the last page."""
        while True:
            response = await self._call(method, request)
            for item in getattr(response, items):
                yield item
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token
