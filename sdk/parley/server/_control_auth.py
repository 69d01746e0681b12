"""Authenticating callers by asking control. Credentials are control's (API keys, OIDC or
dev-login tokens); a service other than control (AI, egress) does not hold them, so it asks
control (``UserService.GetCaller``) with the caller's own ``authorization``, and remembers the
answer for a short while."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import grpc

from parley.control.v1 import user_service_pb2, user_service_pb2_grpc

from ._errors import PermissionDenied, Unauthenticated, Unavailable
from ._interceptors import CallInput
from ._tracing import inject_trace_context


@dataclass(frozen=True, kw_only=True)
class RemoteCaller:
    """The caller of one RPC as control named it: ``owner`` is ``users/{id}`` or
    ``apiKeys/{id}``; ``scopes`` are an API key's."""

    owner: str
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def is_api_key(self) -> bool:
        return self.owner.startswith("apiKeys/")


C = TypeVar("C", bound=RemoteCaller)


class ControlAuthenticator(Generic[C]):
    """Resolves ``authorization`` metadata to a caller (built by ``make_caller``) through
    control, caching answers for ``ttl`` seconds (a revoked key keeps working at most that
    long here)."""

    def __init__(
        self,
        control_target: str,
        make_caller: Callable[..., C],
        *,
        ttl: float = 30.0,
        capacity: int = 10_000,
    ) -> None:
        self._channel = grpc.aio.insecure_channel(control_target)
        self._users = user_service_pb2_grpc.UserServiceStub(self._channel)
        self._make_caller = make_caller
        self._ttl = ttl
        self._capacity = capacity
        self._cache: OrderedDict[str, tuple[float, C]] = OrderedDict()

    async def aclose(self) -> None:
        await self._channel.close()

    async def __call__(self, call: CallInput) -> C:
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
        caller = self._make_caller(owner=answer.user or answer.api_key, scopes=frozenset(answer.scopes))
        self._cache[key] = (now + self._ttl, caller)
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return caller
