"""Who may do what: the rank of room roles, who enters a room without waiting, and the scopes
of API keys. Pure functions over values the use cases have already read; no I/O here."""

from __future__ import annotations

from buf.validate import validate_pb2

from parley.control.v1 import resources_pb2 as res

from ._auth import Principal
from ._errors import PermissionDenied

ALL_SCOPES: tuple[str, ...] = tuple(
    getattr(
        res.ApiKey.DESCRIPTOR.fields_by_name["scopes"]
        .GetOptions()
        .Extensions[validate_pb2.field]
        .repeated.items.string,
        "in",
    )
)  # the scopes the contract declares (ApiKey.scopes' allowed values), so the two never drift

_RANK = {"member": 1, "administrator": 2, "owner": 3}


def ranks_at_least(role: str | None, at_least: str) -> bool:
    """Whether ``role`` (None: no role on the room) ranks at least ``at_least``."""
    return role is not None and _RANK[role] >= _RANK[at_least]


def is_promotion(current: str, new: str) -> bool:
    """Whether changing a role from ``current`` to ``new`` raises it."""
    return _RANK[new] > _RANK[current]


def is_moderator(role: str | None) -> bool:
    """Moderators (administrators and owners) may do everything in a room's meeting."""
    return role in ("administrator", "owner")


def may_manage_owners(mine: str | None) -> bool:
    """Whether a caller grants, changes or removes the owner role: owners, and API keys (``mine``
    None: their scope was checked instead of a role)."""
    return mine in (None, "owner")


def may_enter(access_level: str, role: str | None, user_id: str | None) -> bool:
    """Whether a caller joins at once, or waits in the lobby: anyone enters a public room, anyone
    holding a role enters any room, and any logged-in user enters a trusted one."""
    return access_level == "public" or role is not None or (access_level == "trusted" and user_id is not None)


def require_key_manager(caller: Principal) -> None:
    caller.require_authenticated()
    if not caller.is_api_key:
        raise PermissionDenied("API keys are managed with an API key holding keys:manage")
    caller.require_scope("keys:manage")
