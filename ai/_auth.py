"""Who is calling the AI service. Credentials are control's (API keys, OIDC or dev-login
tokens); the AI service does not hold them, so it asks control (``UserService.GetCaller``)
with the caller's own ``authorization``, and remembers the answer for a short while."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import grpc

from parley.control.v1 import user_service_pb2, user_service_pb2_grpc
from parley.server import CallInput, inject_trace_context

from ._errors import PermissionDenied, Unauthenticated, Unavailable


@dataclass(frozen=True, kw_only=True)
class Caller:
    """The caller of one RPC: ``owner`` is ``users/{id}`` or ``apiKeys/{id}``."""

    owner: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_api_key(self) -> bool:
        return self.owner.startswith("apiKeys/")

    def require(self, scope: str) -> None:
        """API keys need ``scope``; users may always work on their own jobs."""
        if self.is_api_key and scope not in self.scopes:
            raise PermissionDenied(f"the API key lacks the {scope!r} scope")

    def sees_all(self) -> bool:
        """API keys with ``ai:read`` see every job; everyone else only their own."""
        return self.is_api_key and "ai:read" in self.scopes


class ControlAuthenticator:
    """Resolves ``authorization`` metadata to a Caller through control, caching answers for
    ``ttl`` seconds (a revoked key keeps working at most that long here)."""

    def __init__(self, control_target: str, *, ttl: float = 30.0, capacity: int = 10_000) -> None:
        self._channel = grpc.aio.insecure_channel(control_target)
        self._users = user_service_pb2_grpc.UserServiceStub(self._channel)
        self._ttl = ttl
        self._capacity = capacity
        self._cache: OrderedDict[str, tuple[float, Caller]] = OrderedDict()

    async def aclose(self) -> None:
        await self._channel.close()

    async def __call__(self, call: CallInput) -> Caller:
        authorization = call.authorization
        if not authorization:
            raise Unauthenticated("credentials required: send `authorization: Bearer ...`")
        key = hashlib.sha256(authorization.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        try:
            metadata = [("authorization", authorization)]
            inject_trace_context(metadata)
            answer = await self._users.GetCaller(user_service_pb2.GetCallerRequest(), metadata=metadata, timeout=10)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAUTHENTICATED:
                raise Unauthenticated(error.details() or "invalid credentials") from None
            if error.code() == grpc.StatusCode.PERMISSION_DENIED:
                raise PermissionDenied(error.details() or "not allowed") from None
            raise Unavailable(f"cannot check credentials with control: {error.code().name}") from None
        caller = Caller(owner=answer.user or answer.api_key, scopes=frozenset(answer.scopes))
        self._cache[key] = (now + self._ttl, caller)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return caller
