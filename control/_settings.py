"""Control-plane configuration: explicit arguments, else ``PARLEY_*`` environment variables,
else a clear error (the server kit's loader). Loaded once into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from parley import MIN_SECRET_BYTES
from parley.server import ConfigurationError, EnvSpec, parse_value
from parley.server.db import DATABASE_SCHEMES

__all__ = ["ENV", "ConfigurationError", "ControlSettings", "OidcSettings"]


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
    sfu_url: str = "grpc://127.0.0.1:7880"
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
    #: How long the history of an ended meeting is kept (``PARLEY_MEETING_RETENTION``, in
    #: seconds); zero keeps it forever.
    meeting_retention: timedelta = timedelta(days=365)

    def __post_init__(self) -> None:
        if not self.database_url.startswith(DATABASE_SCHEMES):
            raise ConfigurationError(
                f"database_url must be postgresql://... or sqlite:///path, not {self.database_url.split(':')[0]}://..."
            )
        if self.dev_login and self.oidc is not None:
            # Users are keyed by subject: a dev login could claim an OIDC user's subject.
            raise ConfigurationError(
                "dev_login and oidc cannot both be on: the dev login would let anyone "
                "claim an identity-provider user's subject"
            )
        if self.meeting_retention < timedelta(0):
            raise ConfigurationError("meeting_retention must not be negative (0 keeps meetings forever)")
        if len(self.token_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"token_secret must be at least {MIN_SECRET_BYTES} bytes")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> ControlSettings:
        """Reads settings, explicit keyword arguments winning over ``PARLEY_*`` variables
        (``ENV.variables(ControlSettings)`` lists them; durations are in seconds)."""
        return ENV.load(cls, env, explicit)


def _oidc(env: Mapping[str, str]) -> OidcSettings | None:
    if not env.get("PARLEY_OIDC_ISSUER"):
        return None
    if not env.get("PARLEY_OIDC_AUDIENCE"):
        raise ConfigurationError("PARLEY_OIDC_ISSUER is set but PARLEY_OIDC_AUDIENCE is not")
    leeway = env.get("PARLEY_OIDC_LEEWAY")
    return OidcSettings(
        issuer=env["PARLEY_OIDC_ISSUER"],
        audience=env["PARLEY_OIDC_AUDIENCE"],
        **({"leeway": parse_value(timedelta, leeway)} if leeway else {}),  # type: ignore[arg-type]
    )


#: Where each setting comes from: ``PARLEY_<FIELD>`` unless named here.
ENV = EnvSpec(
    prefix="PARLEY_",
    readers={"oidc": (("PARLEY_OIDC_ISSUER", "PARLEY_OIDC_AUDIENCE", "PARLEY_OIDC_LEEWAY"), _oidc)},
)
