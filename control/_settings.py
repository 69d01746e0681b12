"""Control-plane configuration: explicit arguments, else ``PARLEY_*`` environment variables,
else a clear error. Loaded once into a frozen object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from parley import MIN_SECRET_BYTES


class ConfigurationError(ValueError):
    """A required setting is missing or malformed."""


@dataclass(frozen=True, kw_only=True)
class OidcSettings:
    """The identity provider whose tokens control accepts."""

    #: The provider's issuer URL; its discovery document gives the JWKS.
    issuer: str
    #: The audience tokens must be issued for (a client id or a resource indicator).
    audience: str
    #: Clock skew tolerated on ``exp`` / ``nbf`` / ``iat``.
    leeway: timedelta = timedelta(seconds=10)


@dataclass(frozen=True, kw_only=True)
class ControlSettings:
    """Everything the control service needs to run."""

    #: ``postgresql://...`` or ``sqlite:///path``.
    database_url: str
    #: Signs join tokens; the SFU verifies with the same secret (at least 32 bytes).
    token_secret: str
    #: Names ``token_secret`` in tokens (the JWT ``iss``), for rotation.
    token_key_id: str = "parley"
    #: Where participants connect, returned with join tokens (single-node deployments).
    sfu_url: str = "ws://127.0.0.1:7880"
    #: Redis of a multi-node SFU deployment: join tokens then come with the URL of the node
    #: the room meets on (``parley.sfu_registry``), not ``sfu_url``.
    redis_url: str = ""
    sfu_registry_prefix: str = "parley:sfu"
    #: Accepts ``UserService.DevLogin``; only for the embedded default.
    dev_login: bool = False
    oidc: OidcSettings | None = None
    join_token_ttl: timedelta = timedelta(hours=6)
    #: How long a lobby request waits for a decision (refreshed while the person polls).
    lobby_wait: timedelta = timedelta(minutes=10)
    #: How long an accepted lobby entry may be used to join.
    lobby_admitted: timedelta = timedelta(minutes=10)
    #: Interval at which WatchLobbyEntry re-reads an entry.
    lobby_poll_interval: timedelta = field(default=timedelta(milliseconds=500))

    def __post_init__(self) -> None:
        if not self.database_url.startswith(
            ("postgresql://", "postgres://", "postgresql+psycopg://", "sqlite:///", "sqlite+aiosqlite:///")
        ):
            raise ConfigurationError(
                f"database_url must be postgresql://... or sqlite:///path, not {self.database_url.split(':')[0]}://..."
            )
        if self.dev_login and self.oidc is not None:
            # Users are keyed by subject: a dev login could claim an OIDC user's subject.
            raise ConfigurationError(
                "dev_login and oidc cannot both be on: the dev login would let anyone "
                "claim an identity-provider user's subject"
            )
        if len(self.token_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"token_secret must be at least {MIN_SECRET_BYTES} bytes")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> ControlSettings:
        """Reads settings, explicit keyword arguments winning over ``PARLEY_*`` variables."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for key, var in (
            ("database_url", "PARLEY_DATABASE_URL"),
            ("token_secret", "PARLEY_TOKEN_SECRET"),
            ("token_key_id", "PARLEY_TOKEN_KEY_ID"),
            ("sfu_url", "PARLEY_SFU_URL"),
            ("redis_url", "PARLEY_REDIS_URL"),
            ("sfu_registry_prefix", "PARLEY_SFU_REGISTRY_PREFIX"),
        ):
            if var in env:
                values[key] = env[var]
        if "PARLEY_DEV_LOGIN" in env:
            values["dev_login"] = env["PARLEY_DEV_LOGIN"].lower() in ("1", "true", "yes")
        if env.get("PARLEY_OIDC_ISSUER"):
            if not env.get("PARLEY_OIDC_AUDIENCE"):
                raise ConfigurationError("PARLEY_OIDC_ISSUER is set but PARLEY_OIDC_AUDIENCE is not")
            values["oidc"] = OidcSettings(issuer=env["PARLEY_OIDC_ISSUER"], audience=env["PARLEY_OIDC_AUDIENCE"])
        values.update(explicit)
        for required, var in (("database_url", "PARLEY_DATABASE_URL"), ("token_secret", "PARLEY_TOKEN_SECRET")):
            if not values.get(required):
                raise ConfigurationError(f"{required} is required: pass it or set {var}")
        return cls(**values)  # type: ignore[arg-type]
