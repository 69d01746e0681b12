"""The AI service's errors: the service errors every Parley service shares (``parley.server``).
NOT_FOUND also answers for other people's jobs (their existence is private); UNAVAILABLE when
control, which authenticates callers, cannot be reached."""

from parley.server import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from parley.server import ServiceError as AiError

__all__ = [
    "AiError",
    "AlreadyExists",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
