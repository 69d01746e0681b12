"""The AI service's one interceptor: validates each request with protovalidate, authenticates
the caller through control, and turns errors into ``google.rpc.Status`` (shared helpers in
``parley.server``, so it answers exactly as control does)."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import message

from parley.server import error_status, field_violations

from ._auth import Caller
from ._errors import AiError, InvalidArgument, Unauthenticated

log = logging.getLogger(__name__)

_CALLER: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("parley_ai_caller", default=None)
_PARLEY_PREFIX = "/parley."

Authenticate = Callable[[str], Awaitable[Caller]]


def current_caller() -> Caller:
    caller = _CALLER.get()
    if caller is None:  # pragma: no cover - the interceptor always sets it
        raise Unauthenticated("credentials required")
    return caller


def validate(request: message.Message, prefix: str = "") -> None:
    violations = field_violations(request)
    if violations:
        raise InvalidArgument([(prefix + f, d) for f, d in violations])


def _code_of(error: Exception) -> grpc.StatusCode:
    return error.code if isinstance(error, AiError) else grpc.StatusCode.INTERNAL


class AiInterceptor(grpc.aio.ServerInterceptor):
    """Wraps unary, server-streaming and client-streaming handlers; health and reflection
    pass through. Client-streamed messages are validated by the servicer as they arrive."""

    def __init__(self, authenticate: Authenticate) -> None:
        self._authenticate = authenticate

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        if handler is None or not details.method.startswith(_PARLEY_PREFIX):
            return handler
        authorization = str(dict(details.invocation_metadata or ()).get("authorization", ""))
        method = details.method
        kwargs = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, authorization, method), **kwargs
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(handler.unary_stream, authorization, method), **kwargs
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, authorization, method, validate_request=False), **kwargs
            )
        return handler

    async def _fail(self, context: grpc.aio.ServicerContext[Any, Any], error: Exception, method: str) -> None:
        if isinstance(error, grpc.aio.AbortError):
            raise error
        if not isinstance(error, AiError):
            log.exception("unexpected error in %s", method, exc_info=error)
            error = AiError("internal error")
        violations = error.violations if isinstance(error, InvalidArgument) else ()
        status = error_status(error.code, error.message, reason=error.reason, violations=violations)
        await context.abort(status.code, status.details, status.trailing_metadata)

    def _log(self, method: str, started: float, outcome: str) -> None:
        if log.isEnabledFor(logging.INFO):
            caller = _CALLER.get()
            who = caller.owner if caller else "anonymous"
            log.info("%s %s %.1f ms caller=%s", method, outcome, (time.perf_counter() - started) * 1000, who)

    def _unary(
        self, inner: Callable[..., Awaitable[Any]], authorization: str, method: str, *, validate_request: bool = True
    ) -> Callable[..., Awaitable[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, outcome, token = time.perf_counter(), "OK", None
            try:
                if validate_request:
                    validate(request)
                token = _CALLER.set(await self._authenticate(authorization))
                return await inner(request, context)
            except Exception as error:
                outcome = _code_of(error).name
                await self._fail(context, error, method)
            finally:
                self._log(method, started, outcome)
                if token is not None:
                    _CALLER.reset(token)

        return behavior

    def _streaming(
        self, inner: Callable[..., AsyncIterator[Any]], authorization: str, method: str
    ) -> Callable[..., AsyncIterator[Any]]:
        async def behavior(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            started, outcome = time.perf_counter(), "OK"
            try:
                validate(request)
                _CALLER.set(await self._authenticate(authorization))
                async for response in inner(request, context):
                    yield response
            except Exception as error:
                outcome = _code_of(error).name
                await self._fail(context, error, method)
            finally:
                self._log(method, started, outcome)

        return behavior
