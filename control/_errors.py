"""Domain errors, each with its gRPC status code. The server interceptor turns them into
``google.rpc.Status`` (with details) so every RPC reports failures the same way.

    ControlError
    ├── InvalidArgument      INVALID_ARGUMENT, with field violations (google.rpc.BadRequest)
    ├── Unauthenticated      UNAUTHENTICATED: no valid credentials
    ├── PermissionDenied     PERMISSION_DENIED: valid credentials, not allowed
    ├── NotFound             NOT_FOUND
    ├── AlreadyExists        ALREADY_EXISTS
    └── FailedPrecondition   FAILED_PRECONDITION: etag mismatch, last owner, lobby entry lapsed...
"""

from __future__ import annotations

import grpc


class ControlError(Exception):
    code = grpc.StatusCode.INTERNAL
    #: Machine-readable reason sent in a google.rpc.ErrorInfo detail.
    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(ControlError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]], message: str = "invalid request") -> None:
        super().__init__(message + ": " + "; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([(field, description)])


class Unauthenticated(ControlError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(ControlError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(ControlError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExists(ControlError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class FailedPrecondition(ControlError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unavailable(ControlError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
