"""Who may do what: the rank of room roles, who enters a room without waiting, and the scopes
of API keys. Pure functions over values the use cases have already read; no I/O here."""

from __future__ import annotations

from parley import API_KEY_SCOPES

from ._auth import Principal
from ._errors import PermissionDenied
from ._models import AccessLevel, Role

#: The scopes the contract declares (``ApiKey.scopes``' allowed values).
ALL_SCOPES = API_KEY_SCOPES

_RANK = {Role.MEMBER: 1, Role.ADMINISTRATOR: 2, Role.OWNER: 3}


def ranks_at_least(role: Role | None, at_least: Role) -> bool:
    """Whether ``role`` (None: no role on the room) ranks at least ``at_least``."""
    return role is not None and _RANK[role] >= _RANK[at_least]


def is_promotion(current: Role, new: Role) -> bool:
    """Whether changing a role from ``current`` to ``new`` raises it."""
    return _RANK[new] > _RANK[current]


def is_moderator(role: Role | None) -> bool:
    """Moderators (administrators and owners) may do everything in a room's meeting."""
    return role in (Role.ADMINISTRATOR, Role.OWNER)


def may_manage_owners(mine: Role | None) -> bool:
    """Whether a caller grants, changes or removes the owner role: owners, and API keys (``mine``
    None: their scope was checked instead of a role)."""
    return mine in (None, Role.OWNER)


def may_enter(access_level: str, role: Role | None, user_id: str | None) -> bool:
    """Whether a caller joins at once, or waits in the lobby: anyone enters a public room, anyone
    holding a role enters any room, and any logged-in user enters a trusted one."""
    return (
        access_level == AccessLevel.PUBLIC
        or role is not None
        or (access_level == AccessLevel.TRUSTED and user_id is not None)
    )


def require_key_manager(caller: Principal) -> None:
    caller.require_authenticated()
    if not caller.is_api_key:
        raise PermissionDenied("API keys are managed with an API key holding keys:manage")
    caller.require_scope("keys:manage")
