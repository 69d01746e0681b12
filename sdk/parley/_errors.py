"""Errors the SDK raises: one class per gRPC status code, under one root.

ParleyError                  root: .code, .message, parsed .details, .reason, .metadata, .field_violations
├── Cancelled                CANCELLED: the call was cancelled (usually by the caller)
├── InvalidArgument          INVALID_ARGUMENT: bad request; .field_violations names the fields
├── DeadlineExceeded         DEADLINE_EXCEEDED: no answer in time
├── NotFound                 NOT_FOUND: no such room, key, job... (or not visible to the caller)
├── AlreadyExists            ALREADY_EXISTS: a slug or name is taken
├── PermissionDenied         PERMISSION_DENIED: valid credentials, not allowed
├── ResourceExhausted        RESOURCE_EXHAUSTED: over a size, count or rate limit
├── FailedPrecondition       FAILED_PRECONDITION: stale etag, job not finished, wrong node...
├── Aborted                  ABORTED: a concurrent change won; retry
├── OutOfRange               OUT_OF_RANGE
├── Unimplemented            UNIMPLEMENTED: the server does not offer this method
├── Internal                 INTERNAL: the server failed
├── Unavailable              UNAVAILABLE: the server (or one it needs) cannot be reached; retry
├── DataLoss                 DATA_LOSS
└── Unauthenticated          UNAUTHENTICATED: no valid credentials
    └── InvalidTokenError    a join token or webhook signature did not verify (raised locally)

A call's ``UNKNOWN`` status, and failures the SDK detects itself, raise ``ParleyError``.
:meth:`ParleyError.from_rpc_error` is the one place that reads a failed call's
``google.rpc.Status`` (the ``grpc-status-details-bin`` trailer); the room client and the
gateway go through it too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import grpc
from google.protobuf import any_pb2, message
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "InvalidTokenError",
    "NotFound",
    "OutOfRange",
    "ParleyError",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
]

#: The trailer in which gRPC servers send the binary ``google.rpc.Status`` of an error.
STATUS_DETAILS_KEY = "grpc-status-details-bin"
_KNOWN_DETAILS: tuple[type[message.Message], ...] = (
    error_details_pb2.BadRequest,
    error_details_pb2.ErrorInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.DebugInfo,
    error_details_pb2.Help,
    error_details_pb2.LocalizedMessage,
)


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: its path (``room.slug``) and what is wrong with it."""

    field: str
    description: str


def rpc_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a failed call: the one the server sent in the
    ``grpc-status-details-bin`` trailer (details included), else one made of the call's code
    and message."""
    for key, value in error.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            return status_pb2.Status.FromString(value)
    return status_pb2.Status(code=error.code().value[0], message=error.details() or "")


def status_details(status: status_pb2.Status) -> tuple[message.Message, ...]:
    """The detail messages of a ``google.rpc.Status``, unpacked (``BadRequest``, ``ErrorInfo``,
    ...); a detail of a type the SDK does not know stays a packed ``google.protobuf.Any``."""
    return tuple(_unpack(packed) for packed in status.details)


def _unpack(packed: any_pb2.Any) -> message.Message:
    for cls in _KNOWN_DETAILS:
        if packed.Is(cls.DESCRIPTOR):  # type: ignore[arg-type]
            detail = cls()
            packed.Unpack(detail)
            return detail
    return packed


def _pack(details: Iterable[message.Message]) -> list[any_pb2.Any]:
    packed = []
    for detail in details:
        if isinstance(detail, any_pb2.Any):
            packed.append(detail)
        else:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
    return packed


def _status_code(value: int) -> grpc.StatusCode:
    return next((c for c in grpc.StatusCode if c.value[0] == value), grpc.StatusCode.UNKNOWN)


class ParleyError(Exception):
    """A Parley call failed. Catch a subclass (``except parley.NotFound``) to handle one code.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        details: The ``google.rpc`` detail messages the server attached (``BadRequest``,
            ``ErrorInfo``, ...), unpacked.
    """

    #: The code of errors of this class (each subclass has its own).
    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        details: tuple[message.Message, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.message = message
        self.details = details

    @property
    def field_violations(self) -> list[FieldViolation]:
        """The invalid fields listed in a ``BadRequest`` detail (INVALID_ARGUMENT)."""
        return [
            FieldViolation(v.field, v.description)
            for d in self.details
            if isinstance(d, error_details_pb2.BadRequest)
            for v in d.field_violations
        ]

    @property
    def reason(self) -> str:
        """The machine-readable reason of an ``ErrorInfo`` detail, or ``""``."""
        return next((d.reason for d in self.details if isinstance(d, error_details_pb2.ErrorInfo)), "")

    @property
    def metadata(self) -> dict[str, str]:
        """The ``ErrorInfo`` detail's metadata (what a client may act on), or ``{}``."""
        return next((dict(d.metadata) for d in self.details if isinstance(d, error_details_pb2.ErrorInfo)), {})

    @property
    def grpc_status(self) -> status_pb2.Status:
        """The error as a ``google.rpc.Status`` (code, message and packed details)."""
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=_pack(self.details))

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @staticmethod
    def from_status(status: status_pb2.Status) -> ParleyError:
        """The error of a ``google.rpc.Status`` (as the SFU sends inside the signal stream), as
        the subclass of its code, with its details unpacked."""
        code = _status_code(status.code)
        error_class = _BY_CODE.get(code, ParleyError)
        return error_class(status.message, code=code, details=status_details(status))

    @staticmethod
    def from_rpc_error(error: grpc.aio.AioRpcError) -> ParleyError:
        """The error of a failed call, as the subclass of its code, with the details of its
        ``google.rpc.Status`` parsed."""
        return ParleyError.from_status(rpc_status(error))


class Cancelled(ParleyError):
    """CANCELLED: the call was cancelled, usually by the caller."""

    default_code = grpc.StatusCode.CANCELLED


class InvalidArgument(ParleyError):
    """INVALID_ARGUMENT: the request is malformed; :attr:`field_violations` names the fields."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(ParleyError):
    """DEADLINE_EXCEEDED: the call did not finish before its deadline."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(ParleyError):
    """NOT_FOUND: no such resource, or the caller may not see it."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(ParleyError):
    """ALREADY_EXISTS: the resource (a slug, a name) exists already."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(ParleyError):
    """PERMISSION_DENIED: the credentials are valid but do not allow this."""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(ParleyError):
    """RESOURCE_EXHAUSTED: over a size, count or rate limit (a full room, too many requests)."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(ParleyError):
    """FAILED_PRECONDITION: the resource is not in a state that allows this (a stale etag,
    an unfinished job, a room that meets on another node); :attr:`reason` says which."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(ParleyError):
    """ABORTED: a concurrent change won; read again and retry."""

    default_code = grpc.StatusCode.ABORTED


class OutOfRange(ParleyError):
    """OUT_OF_RANGE: a value past the valid range."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(ParleyError):
    """UNIMPLEMENTED: the server does not offer this method."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(ParleyError):
    """INTERNAL: the server failed."""

    default_code = grpc.StatusCode.INTERNAL


class Unavailable(ParleyError):
    """UNAVAILABLE: the server, or a service it needs, cannot be reached now; retrying may work."""

    default_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(ParleyError):
    """DATA_LOSS: unrecoverable data loss or corruption."""

    default_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(ParleyError):
    """UNAUTHENTICATED: no credentials, or ones that are not valid (expired, revoked...)."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class InvalidTokenError(Unauthenticated):
    """A join token or a webhook signature did not verify (raised by the SDK itself)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


_BY_CODE: dict[grpc.StatusCode, type[ParleyError]] = {
    cls.default_code: cls
    for cls in (
        Cancelled,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}
