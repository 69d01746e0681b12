"""Control's errors: the service errors every Parley service shares (``parley.server``), which
the interceptor turns into ``google.rpc.Status`` with details."""

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
from parley.server import ServiceError as ControlError

__all__ = [
    "AlreadyExists",
    "ControlError",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
]
