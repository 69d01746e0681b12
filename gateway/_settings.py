"""Gateway configuration: explicit arguments, else ``PARLEY_*`` variables, else an error.

``PARLEY_CONTROL_TARGET`` and ``PARLEY_SESSION_SECRET`` are required; ``PARLEY_AI_TARGET`` (the
AI service's gRPC address) is optional, ``PARLEY_OIDC_*`` configure the browser login and
``PARLEY_SECURE_COOKIES`` the session cookie."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"


class ConfigurationError(ValueError):
    """A required gateway setting is missing or malformed."""


@dataclass(frozen=True, kw_only=True)
class OidcClientSettings:
    """The identity provider browsers log in with (authorization code + PKCE)."""

    issuer: str
    client_id: str
    client_secret: str = ""
    scopes: str = "openid email profile"


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    #: gRPC address of control, ``host:port``: every service but the AI service's.
    control_target: str
    #: Signs the session cookie; at least 32 bytes.
    session_secret: str
    oidc: OidcClientSettings | None = None
    #: The embedded default's login without an identity provider (`/auth/login?subject=...`).
    dev_login: bool = False
    #: Send cookies only over HTTPS (turn off for plain-HTTP local runs).
    secure_cookies: bool = True
    #: Largest request body accepted, in bytes.
    max_body_bytes: int = 1 << 20
    static_dir: Path = field(default=STATIC_DIR)
    #: gRPC address of the AI service (``parley.ai.*`` services: transcriptions, summaries),
    #: ``host:port``. Empty: this gateway has no AI service, and its routes answer 503.
    ai_target: str = ""
    #: gRPC address of the SFU whose signal stream ``/v1/signal`` bridges browsers to.
    #: Empty: that WebSocket answers an UNAVAILABLE error.
    sfu_target: str = ""
    #: Redis of a multi-node SFU deployment: ``/v1/signal`` then goes to the node the joining
    #: room meets on (``parley.sfu_registry``) instead of ``sfu_target``.
    redis_url: str = ""
    sfu_registry_prefix: str = "parley:sfu"

    def __post_init__(self) -> None:
        if len(self.session_secret.encode()) < 32:
            raise ConfigurationError("session_secret must be at least 32 bytes")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> GatewaySettings:
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if "PARLEY_CONTROL_TARGET" in env:
            values["control_target"] = env["PARLEY_CONTROL_TARGET"]
        if "PARLEY_SESSION_SECRET" in env:
            values["session_secret"] = env["PARLEY_SESSION_SECRET"]
        if env.get("PARLEY_OIDC_ISSUER"):
            if not env.get("PARLEY_OIDC_CLIENT_ID"):
                raise ConfigurationError("PARLEY_OIDC_ISSUER is set but PARLEY_OIDC_CLIENT_ID is not")
            values["oidc"] = OidcClientSettings(
                issuer=env["PARLEY_OIDC_ISSUER"],
                client_id=env["PARLEY_OIDC_CLIENT_ID"],
                client_secret=env.get("PARLEY_OIDC_CLIENT_SECRET", ""),
                scopes=env.get("PARLEY_OIDC_SCOPES", "openid email profile"),
            )
        if "PARLEY_AI_TARGET" in env:
            values["ai_target"] = env["PARLEY_AI_TARGET"]
        if "PARLEY_SFU_TARGET" in env:
            values["sfu_target"] = env["PARLEY_SFU_TARGET"]
        if "PARLEY_REDIS_URL" in env:
            values["redis_url"] = env["PARLEY_REDIS_URL"]
        if "PARLEY_SFU_REGISTRY_PREFIX" in env:
            values["sfu_registry_prefix"] = env["PARLEY_SFU_REGISTRY_PREFIX"]
        if "PARLEY_SECURE_COOKIES" in env:
            values["secure_cookies"] = env["PARLEY_SECURE_COOKIES"].lower() in ("1", "true", "yes")
        values.update(explicit)
        for required, var in (("control_target", "PARLEY_CONTROL_TARGET"), ("session_secret", "PARLEY_SESSION_SECRET")):
            if not values.get(required):
                raise ConfigurationError(f"{required} is required: pass it or set {var}")
        return cls(**values)  # type: ignore[arg-type]
