"""Errors the SDK raises.

ParleyError            root: every failure of a call, with .code and parsed .details
└── InvalidTokenError  a join token or webhook signature did not verify (UNAUTHENTICATED)
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, message
from google.rpc import error_details_pb2, status_pb2

_STATUS_DETAILS_KEY = "grpc-status-details-bin"
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


class ParleyError(Exception):
    """A Parley call failed.

    Attributes:
        code: The gRPC status code.
        message: The server's message.
        details: The ``google.rpc`` detail messages the server attached (``BadRequest``,
            ``ErrorInfo``, ...), unpacked.
    """

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        details: tuple[message.Message, ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
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

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error: grpc.aio.AioRpcError) -> ParleyError:
        """Builds the error from a failed call, parsing ``google.rpc.Status`` details."""
        details: list[message.Message] = []
        for key, value in error.trailing_metadata() or ():
            if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
                status = status_pb2.Status.FromString(value)
                details.extend(_unpack(d) for d in status.details)
        return cls(error.details() or "", code=error.code(), details=tuple(details))


def _unpack(packed: any_pb2.Any) -> message.Message:
    for cls in _KNOWN_DETAILS:
        if packed.Is(cls.DESCRIPTOR):  # type: ignore[arg-type]
            detail = cls()
            packed.Unpack(detail)
            return detail
    return packed


class InvalidTokenError(ParleyError):
    """A join token or a webhook signature did not verify."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=grpc.StatusCode.UNAUTHENTICATED)
