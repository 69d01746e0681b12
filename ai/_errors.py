"""Errors of the AI service, each with its gRPC status code; the interceptor turns them into
``google.rpc.Status`` with an ErrorInfo reason.

    AiError
    ├── InvalidArgument      INVALID_ARGUMENT, with field violations
    ├── Unauthenticated      UNAUTHENTICATED: no valid credentials
    ├── PermissionDenied     PERMISSION_DENIED: valid credentials, not allowed
    ├── NotFound             NOT_FOUND (also for other people's jobs: their existence is private)
    ├── FailedPrecondition   FAILED_PRECONDITION: e.g. exporting a job that has not succeeded
    ├── ResourceExhausted    RESOURCE_EXHAUSTED: an upload over the size limit
    └── Unavailable          UNAVAILABLE: control (which authenticates callers) cannot be reached
"""

from __future__ import annotations

import grpc


class AiError(Exception):
    code = grpc.StatusCode.INTERNAL
    reason = "INTERNAL"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason:
            self.reason = reason


class InvalidArgument(AiError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[tuple[str, str]], message: str = "invalid request") -> None:
        super().__init__(message + ": " + "; ".join(f"{f}: {d}" for f, d in violations))
        self.violations = violations

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([(field, description)])


class Unauthenticated(AiError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDenied(AiError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class NotFound(AiError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class FailedPrecondition(AiError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(AiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class Unavailable(AiError):
    code = grpc.StatusCode.UNAVAILABLE
    reason = "UNAVAILABLE"
