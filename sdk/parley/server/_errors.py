"""The errors every Parley service answers with, and how they become ``google.rpc.Status``:
protovalidate violations as ``google.rpc.BadRequest`` field violations, and an ``ErrorInfo``
reason in the ``parley.dev`` domain on every error.

    ServiceError             INTERNAL
    ├── InvalidArgument      INVALID_ARGUMENT, with field violations (google.rpc.BadRequest)
    ├── Unauthenticated      UNAUTHENTICATED: no valid credentials
    ├── PermissionDenied     PERMISSION_DENIED: valid credentials, not allowed
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    ├── FailedPrecondition   FAILED_PRECONDITION: etag mismatch, a job not finished...
    ├── ResourceExhausted    RESOURCE_EXHAUSTED: over a size, count or rate limit
    └── Unavailable          UNAVAILABLE: a service it depends on cannot be reached
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "ServiceError",
    "Unauthenticated",
    "Unavailable",
    "error_status",
    "field_violations",
    "status_message",
    "to_status",
    "to_status_message",
    "validate",
]

ERROR_DOMAIN = "parley.dev"


def _field_path(violation: protovalidate.Violation) -> str:
    parts = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        parts.append(element.field_name)
        subscript = element.subscript
        if subscript is not None:
            parts[-1] += f"[{subscript.value!r}]" if subscript.field != "index" else f"[{subscript.value}]"
    return ".".join(parts)


def field_violations(request: Message) -> list[tuple[str, str]]:
    """Every protovalidate rule ``request`` breaks, as ``(field path, description)``."""
    return [(_field_path(v), v.proto.message or v.proto.rule_id) for v in protovalidate.collect_violations(request)]


def validate(request: Message) -> None:
    """Raises InvalidArgument listing every protovalidate rule ``request`` breaks (for messages
    a handler reads from a stream; the validation interceptor checks the others)."""
    if violations := field_violations(request):
        raise InvalidArgument(violations)


def error_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    violations: Sequence[tuple[str, str]] = (),
    metadata: Mapping[str, str] | None = None,
) -> grpc.Status:
    """A ``grpc.Status`` carrying ``google.rpc.Status`` with an ErrorInfo (and a BadRequest
    when there are field violations), ready for ``context.abort``."""
    converted: grpc.Status = rpc_status.to_status(
        status_message(code, message, reason=reason, violations=violations, metadata=metadata)
    )
    return converted


def status_message(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    violations: Sequence[tuple[str, str]] = (),
    metadata: Mapping[str, str] | None = None,
) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error: an ErrorInfo (its reason, and ``metadata`` a
    client acts on), and a BadRequest when there are field violations (for errors sent inside
    a stream rather than ending it)."""
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN, metadata=metadata)]
    if violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
                ]
            )
        )
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=packed)


class ServiceError(Exception):
    """An error a Parley service answers with: its gRPC status code and an ErrorInfo reason
    (the kit's error interceptor turns it into ``google.rpc.Status`` with details)."""

    code = grpc.StatusCode.INTERNAL
    #: Machine-readable reason sent in a google.rpc.ErrorInfo detail.
    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason
        #: Sent in the ErrorInfo for clients to act on (the URL of the node a room meets on).
        self.metadata = dict(metadata or {})


class InvalidArgument(ServiceError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]], message: str = "invalid request") -> None:
        super().__init__(message + ": " + "; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([(field, description)])


class Unauthenticated(ServiceError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(ServiceError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(ServiceError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(ServiceError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(ServiceError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"


def to_status(error: ServiceError) -> grpc.Status:
    """The ``grpc.Status`` (google.rpc.Status with details) a service error answers with."""
    violations = error.violations if isinstance(error, InvalidArgument) else ()
    return error_status(error.code, error.message, reason=error.reason, violations=violations, metadata=error.metadata)


def to_status_message(error: ServiceError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a service error, for errors sent inside a stream."""
    violations = error.violations if isinstance(error, InvalidArgument) else ()
    return status_message(
        error.code, error.message, reason=error.reason, violations=violations, metadata=error.metadata
    )
