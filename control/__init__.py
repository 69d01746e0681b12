"""Parley's control plane: users, rooms, roles, the lobby, join tokens and API keys."""

from ._errors import (
    AlreadyExists,
    ControlError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from ._policy import ALL_SCOPES
from ._server import SERVICE_NAMES, ControlServer
from ._service import ControlPlane
from ._settings import ConfigurationError, ControlSettings, OidcSettings

__all__ = [
    "ALL_SCOPES",
    "SERVICE_NAMES",
    "AlreadyExists",
    "ConfigurationError",
    "ControlError",
    "ControlPlane",
    "ControlServer",
    "ControlSettings",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OidcSettings",
    "PermissionDenied",
    "Unauthenticated",
]
