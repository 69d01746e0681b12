"""Who is calling the AI service: control says (``parley.server.ControlAuthenticator``); the
rules on top are the AI service's."""

from __future__ import annotations

from dataclasses import dataclass

from parley.server import RemoteCaller

from ._errors import PermissionDenied


@dataclass(frozen=True, kw_only=True)
class Caller(RemoteCaller):
    """The caller of one RPC."""

    def require(self, scope: str) -> None:
        """API keys need ``scope``; users may always work on their own jobs."""
        if self.is_api_key and scope not in self.scopes:
            raise PermissionDenied(f"the API key lacks the {scope!r} scope")

    def sees_all(self) -> bool:
        """API keys with ``ai:read`` see every job; everyone else only their own."""
        return self.is_api_key and "ai:read" in self.scopes
