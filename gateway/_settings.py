"""Gateway configuration: explicit arguments, else ``PARLEY_*`` variables, else an error.

``PARLEY_CONTROL_TARGET`` and ``PARLEY_SESSION_SECRET`` are required; ``PARLEY_AI_TARGET`` and
``PARLEY_EGRESS_TARGET`` (the AI and egress services' gRPC addresses) are optional,
``PARLEY_FILES_SECRET`` and ``PARLEY_RECORDINGS_DIR`` serve recordings kept in a local folder,
``PARLEY_OIDC_*`` configure the browser login and ``PARLEY_SECURE_COOKIES`` the session cookie."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from parley.server import ConfigurationError, EnvSpec

__all__ = ["ENV", "STATIC_DIR", "ConfigurationError", "GatewaySettings", "OidcClientSettings"]

STATIC_DIR = Path(__file__).parent / "static"


@dataclass(frozen=True, kw_only=True)
class OidcClientSettings:
    """The identity provider browsers log in with (authorization code + PKCE)."""

    issuer: str
    client_id: str
    client_secret: str = ""
    scopes: str = "openid email profile"


@dataclass(frozen=True, kw_only=True)
class GatewaySettings:
    #: gRPC address of control, ``host:port``: every service but the AI and egress services'.
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
    #: gRPC address of the egress service (``parley.egress.*``), ``host:port``. Empty: its
    #: routes answer 503.
    egress_target: str = ""
    #: Checks the download tokens control signs for recordings in a local folder (control's
    #: own ``files_secret``). Empty, or no ``recordings_dir``: ``/v1/files/...`` answers 503.
    files_secret: str = field(default="", repr=False)
    #: The local folder recordings are written to (the egress service's and control's), whose
    #: files ``/v1/files/{token}`` serves.
    recordings_dir: Path | None = None
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
        """Reads settings, explicit keyword arguments winning over ``PARLEY_*`` variables
        (``ENV.variables(GatewaySettings)`` lists them)."""
        return ENV.load(cls, env, explicit)


def _oidc(env: Mapping[str, str]) -> OidcClientSettings | None:
    if not env.get("PARLEY_OIDC_ISSUER"):
        return None
    if not env.get("PARLEY_OIDC_CLIENT_ID"):
        raise ConfigurationError("PARLEY_OIDC_ISSUER is set but PARLEY_OIDC_CLIENT_ID is not")
    return OidcClientSettings(
        issuer=env["PARLEY_OIDC_ISSUER"],
        client_id=env["PARLEY_OIDC_CLIENT_ID"],
        client_secret=env.get("PARLEY_OIDC_CLIENT_SECRET", ""),
        scopes=env.get("PARLEY_OIDC_SCOPES", "openid email profile"),
    )


#: Where each setting comes from: ``PARLEY_<FIELD>`` unless read from several variables.
ENV = EnvSpec(
    prefix="PARLEY_",
    readers={
        "oidc": (
            ("PARLEY_OIDC_ISSUER", "PARLEY_OIDC_CLIENT_ID", "PARLEY_OIDC_CLIENT_SECRET", "PARLEY_OIDC_SCOPES"),
            _oidc,
        )
    },
)
