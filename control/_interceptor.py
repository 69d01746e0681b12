"""One server interceptor for every Parley RPC: validates the request against its
protovalidate rules, authenticates the caller, and turns domain errors into
``google.rpc.Status`` (with BadRequest / ErrorInfo details)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message

from parley import redacted
from parley.server import error_status, field_violations

from ._auth import ANONYMOUS, Principal
from ._errors import ControlError, InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("parley_caller", default=ANONYMOUS)
_PARLEY_PREFIX = "/parley."

Authenticate = Callable[[str], Awaitable[Principal]]


def current_caller() -> Principal:
    """The authenticated caller of the RPC being served."""
    return _CALLER.get()


def validate(request: message.Message) -> None:
    """Raises InvalidArgument listing every broken protovalidate rule of ``request``."""
    violations = field_violations(request)
    if violations:
        raise InvalidArgument(violations)


def to_status(error: ControlError) -> grpc.Status:
    violations = error.violations if isinstance(error, InvalidArgument) else ()
    return error_status(error.code, error.message, reason=error.reason, violations=violations)


class ControlInterceptor(grpc.aio.ServerInterceptor):
    """Wraps Parley's unary and server-streaming handlers; health and reflection pass through."""

    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(_PARLEY_PREFIX):
            return handler
        metadata = dict(details.invocation_metadata or ())
        authorization = str(metadata.get("authorization", ""))
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, authorization, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, authorization, details.method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    async def _enter(self, request: message.Message, authorization: str) -> contextvars.Token[Principal]:
        validate(request)
        principal = await self._authenticate(authorization) if authorization else ANONYMOUS
        return _CALLER.set(principal)

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], error: Exception, method: str) -> None:
        if isinstance(error, grpc.aio.AbortError):
            raise error  # already answered
        if not isinstance(error, ControlError):
            log.exception("unexpected error in %s", method, exc_info=error)
            error = ControlError("internal error")
        elif isinstance(error, Unauthenticated | InvalidArgument):
            log.info("%s refused: %s", method, error.message)
        status = to_status(error)
        await context.abort(status.code, status.details, status.trailing_metadata)

    def _log(self, method: str, request: message.Message, started: float, outcome: str) -> None:
        if log.isEnabledFor(logging.INFO):
            caller = _CALLER.get()
            who = caller.user_id or caller.api_key_id or caller.kind
            log.info("%s %s %.1f ms caller=%s", method, outcome, (time.perf_counter() - started) * 1000, who)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s request %s", method, redacted(request))

    def _unary(
        self, inner: Callable[..., Awaitable[Any]], authorization: str, method: str
    ) -> Callable[..., Awaitable[Any]]:
        async def behavior(request: message.Message, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, outcome, token = time.perf_counter(), "OK", None
            try:
                token = await self._enter(request, authorization)
                return await inner(request, context)
            except Exception as error:  # every failure becomes a Status, never a crash
                outcome = _code_of(error).name
                await self._fail(context, error, method)
            finally:
                self._log(method, request, started, outcome)
                if token is not None:
                    _CALLER.reset(token)

        return behavior

    def _streaming(
        self, inner: Callable[..., AsyncIterator[Any]], authorization: str, method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def behavior(request: message.Message, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started, outcome = time.perf_counter(), "OK"
            try:
                # Each RPC runs in its own task, so the caller set here stays with this stream.
                await self._enter(request, authorization)
                async for response in inner(request, context):
                    yield response
            except Exception as error:
                outcome = _code_of(error).name
                await self._fail(context, error, method)
            finally:
                self._log(method, request, started, outcome)

        return behavior


def _code_of(error: Exception) -> grpc.StatusCode:
    return error.code if isinstance(error, ControlError) else grpc.StatusCode.INTERNAL
