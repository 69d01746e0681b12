"""One interceptor chain for every Parley gRPC service.

Each link is a public ``ServerInterceptor`` with one typed input per call (``CallInput``), in the
manner of Temporal's interceptors: it does its part and calls ``next``. ``InterceptorChain``
adapts a list of them to ``grpc.aio``; ``standard_interceptors`` is the chain every service runs
(outermost first):

    TracingInterceptor         a server span, continuing the caller's W3C trace context
    MetricsInterceptor         RPC count and latency by method and code (Prometheus)
    LoggingInterceptor         one line per call; the redacted request at DEBUG
    ErrorInterceptor           every failure becomes google.rpc.Status with an ErrorInfo
    ValidationInterceptor      protovalidate rules -> INVALID_ARGUMENT with field violations
    AuthenticationInterceptor  the caller, for the handler to read from a context variable

Health and reflection calls (outside ``/parley.``) pass through untouched.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import grpc

from .._redact import redacted
from ._errors import InvalidArgument, ServiceError, Unauthenticated, to_status, validate
from ._metrics import RPC_DURATION, RPC_TOTAL
from ._tracing import server_span

log = logging.getLogger("parley.server")

_PARLEY_PREFIX = "/parley."

T = TypeVar("T")
Servicer = grpc.aio.ServicerContext[Any, Any]
if TYPE_CHECKING:
    Handler = grpc.RpcMethodHandler[Any, Any]


@dataclass(slots=True)
class CallInput:
    """One call, as every interceptor sees it."""

    #: The full method name, ``/parley.control.v1.RoomService/GetRoom``.
    method: str
    #: The request message; for client- or bidi-streaming calls, the async iterator of them.
    request: Any
    context: Servicer
    #: The call's text metadata (keys lower case).
    metadata: Mapping[str, str]
    request_streaming: bool
    response_streaming: bool
    #: Who called, for the log line; set by the authentication interceptor.
    caller_name: str = field(default="anonymous")

    @property
    def service(self) -> str:
        """``parley.control.v1.RoomService``."""
        return self.method[1:].rpartition("/")[0]

    @property
    def method_name(self) -> str:
        """``GetRoom``."""
        return self.method.rpartition("/")[2]

    @property
    def authorization(self) -> str:
        return self.metadata.get("authorization", "")


UnaryNext = Callable[[CallInput], Awaitable[Any]]
StreamNext = Callable[[CallInput], AsyncIterator[Any]]


class ServerInterceptor:
    """One link of the chain. Override ``intercept_unary`` (calls with one response) and / or
    ``intercept_stream`` (server- and bidi-streaming calls); call ``next`` to go on."""

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        return await next(input)

    def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        return next(input)


def outcome(error: BaseException | None, context: Servicer) -> grpc.StatusCode:
    """The status code a call ended with."""
    if error is None:
        return grpc.StatusCode.OK
    if isinstance(error, ServiceError):
        return error.code
    code = context.code() if isinstance(error, grpc.aio.AbortError) else None
    if isinstance(code, grpc.StatusCode):
        return code
    if isinstance(code, int):  # grpc.aio keeps the code as its number after abort
        return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)
    cancelled = isinstance(error, GeneratorExit | asyncio.CancelledError)
    return grpc.StatusCode.CANCELLED if cancelled else grpc.StatusCode.INTERNAL


class ErrorInterceptor(ServerInterceptor):
    """Ends a failed call with ``google.rpc.Status``: a ``ServiceError`` answers its own code,
    reason and field violations; anything else is logged and answers INTERNAL. A handler that
    aborted by itself keeps its answer."""

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        try:
            return await next(input)
        except Exception as error:
            await self._abort(input, error)

    async def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        try:
            async for response in next(input):
                yield response
        except Exception as error:
            await self._abort(input, error)

    @staticmethod
    async def _abort(input: CallInput, error: Exception) -> None:
        if isinstance(error, grpc.aio.AbortError):
            raise error
        if not isinstance(error, ServiceError):
            log.exception("unexpected error in %s", input.method, exc_info=error)
            error = ServiceError("internal error")
        elif isinstance(error, Unauthenticated | InvalidArgument):
            log.info("%s refused: %s", input.method, error.message)
        status = to_status(error)
        await input.context.abort(status.code, status.details, status.trailing_metadata)


class ValidationInterceptor(ServerInterceptor):
    """Checks a request message against its protovalidate rules before the handler runs.
    Streamed requests are checked by their handler, message by message."""

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        self._check(input)
        return await next(input)

    def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        self._check(input)
        return next(input)

    @staticmethod
    def _check(input: CallInput) -> None:
        if not input.request_streaming:
            validate(input.request)


class AuthenticationInterceptor(ServerInterceptor, Generic[T]):
    """Authenticates the caller with the service's ``authenticate`` and keeps the result in
    ``caller`` (a context variable the handlers read) for the call's duration."""

    def __init__(
        self,
        authenticate: Callable[[CallInput], Awaitable[T]],
        caller: contextvars.ContextVar[T],
        *,
        describe: Callable[[T], str] = str,
    ) -> None:
        self._authenticate = authenticate
        self._caller = caller
        self._describe = describe

    async def _enter(self, input: CallInput) -> contextvars.Token[T]:
        principal = await self._authenticate(input)
        input.caller_name = self._describe(principal)
        return self._caller.set(principal)

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        token = await self._enter(input)
        try:
            return await next(input)
        finally:
            self._caller.reset(token)

    async def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        # Each RPC runs in its own task, so the caller set here stays with this stream.
        await self._enter(input)
        async for response in next(input):
            yield response


class _TimedInterceptor(ServerInterceptor):
    """Times each call and hands ``finished`` its outcome (a streaming call: its whole life)."""

    def finished(self, input: CallInput, seconds: float, error: BaseException | None) -> None:
        raise NotImplementedError

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        started, failure = time.perf_counter(), None
        try:
            return await next(input)
        except BaseException as error:
            failure = error
            raise
        finally:
            self.finished(input, time.perf_counter() - started, failure)

    async def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        started, failure = time.perf_counter(), None
        try:
            async for response in next(input):
                yield response
        except BaseException as error:
            failure = error
            raise
        finally:
            self.finished(input, time.perf_counter() - started, failure)


class LoggingInterceptor(_TimedInterceptor):
    """One INFO line per call (method, code, milliseconds, caller); the request, with its
    sensitive fields redacted, at DEBUG."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger

    def finished(self, input: CallInput, seconds: float, error: BaseException | None) -> None:
        if self._log.isEnabledFor(logging.INFO):
            code = outcome(error, input.context).name
            self._log.info("%s %s %.1f ms caller=%s", input.method, code, seconds * 1000, input.caller_name)
        if self._log.isEnabledFor(logging.DEBUG) and not input.request_streaming:
            self._log.debug("%s request %s", input.method, redacted(input.request))


class MetricsInterceptor(_TimedInterceptor):
    """``parley_rpc_requests_total`` and ``parley_rpc_duration_seconds`` by service, method and
    code."""

    def finished(self, input: CallInput, seconds: float, error: BaseException | None) -> None:
        service, method = input.service, input.method_name
        RPC_TOTAL.labels(service, method, outcome(error, input.context).name).inc()
        RPC_DURATION.labels(service, method).observe(seconds)


class TracingInterceptor(ServerInterceptor):
    """A server span per call (OpenTelemetry), child of the caller's span when the metadata
    carries a W3C ``traceparent``. Costs next to nothing while no tracer provider is set."""

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        with server_span(input.method, input.metadata) as span:
            try:
                return await next(input)
            except BaseException as error:
                span.failed(outcome(error, input.context))
                raise

    async def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        with server_span(input.method, input.metadata, current=False) as span:
            try:
                async for response in next(input):
                    yield response
            except BaseException as error:
                span.failed(outcome(error, input.context))
                raise


def standard_interceptors(
    logger: logging.Logger, authentication: ServerInterceptor | None = None
) -> list[ServerInterceptor]:
    """The chain every Parley service runs, outermost first; ``authentication`` last."""
    chain: list[ServerInterceptor] = [
        TracingInterceptor(),
        MetricsInterceptor(),
        LoggingInterceptor(logger),
        ErrorInterceptor(),
        ValidationInterceptor(),
    ]
    if authentication is not None:
        chain.append(authentication)
    return chain


class InterceptorChain(grpc.aio.ServerInterceptor):
    """Runs Parley's methods through ``interceptors`` (outermost first). The wrapped handler of
    each method is built once and reused."""

    def __init__(self, interceptors: Sequence[ServerInterceptor]) -> None:
        self._interceptors = tuple(interceptors)
        self._handlers: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or not method.startswith(_PARLEY_PREFIX):
            return handler
        cached = self._handlers.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        self._handlers[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Handler) -> Handler:
        request_streaming, response_streaming = handler.request_streaming, handler.response_streaming
        inner: Any = handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary

        def call_input(request: Any, context: Servicer) -> CallInput:
            metadata = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            return CallInput(method, request, context, metadata, request_streaming, response_streaming)

        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if response_streaming:
            stream_chain: StreamNext = lambda input: inner(input.request, input.context)  # noqa: E731
            for interceptor in reversed(self._interceptors):
                stream_chain = functools.partial(interceptor.intercept_stream, next=stream_chain)

            async def stream_behavior(request: Any, context: Servicer) -> AsyncIterator[Any]:
                # grpc.aio tells streaming handlers by their being async generator functions.
                async for response in stream_chain(call_input(request, context)):
                    yield response

            if request_streaming:
                return grpc.stream_stream_rpc_method_handler(stream_behavior, **serializers)
            return grpc.unary_stream_rpc_method_handler(stream_behavior, **serializers)

        unary_chain: UnaryNext = lambda input: inner(input.request, input.context)  # noqa: E731
        for interceptor in reversed(self._interceptors):
            unary_chain = functools.partial(interceptor.intercept_unary, next=unary_chain)

        async def unary_behavior(request: Any, context: Servicer) -> Any:
            return await unary_chain(call_input(request, context))

        if request_streaming:
            return grpc.stream_unary_rpc_method_handler(unary_behavior, **serializers)
        return grpc.unary_unary_rpc_method_handler(unary_behavior, **serializers)
