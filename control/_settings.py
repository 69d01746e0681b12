"""Control-plane configuration: explicit arguments, else ``PARLEY_*`` environment variables,
else a clear error (the server kit's loader). Loaded once into a frozen object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from parley import MIN_SECRET_BYTES
from parley.server import ConfigurationError, EnvSpec, parse_value
from parley.server.db import DATABASE_SCHEMES

from ._targets import parse_networks

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
    #: Networks (CIDRs, comma-separated) webhooks may target although they are loopback,
    #: private or reserved; empty refuses them all (``parley up`` allows loopback).
    webhook_allowed_networks: tuple[str, ...] = ()
    #: How long a delivery is retried before it is given up (``FAILED``).
    webhook_retry_for: timedelta = timedelta(hours=24)
    #: The first retry's delay; each next one doubles (with jitter) up to the maximum.
    webhook_retry_initial: timedelta = timedelta(seconds=2)
    webhook_retry_max_interval: timedelta = timedelta(minutes=10)
    #: How long a target may take to answer.
    webhook_timeout: timedelta = timedelta(seconds=10)
    #: The circuit breaker: after this many failures in a row a target is paused for
    #: ``webhook_breaker_pause``, doubled with each further failure (up to the maximum retry
    #: interval, if longer), and tried again after it.
    webhook_breaker_failures: int = 10
    webhook_breaker_pause: timedelta = timedelta(seconds=30)
    #: How many deliveries one worker sends at once (each to a different (webhook, room)).
    webhook_concurrency: int = 32
    #: How often a worker looks for due deliveries when nothing woke it.
    webhook_poll_interval: timedelta = timedelta(seconds=1)
    #: How long delivered and failed deliveries stay in the log.
    webhook_log_retention: timedelta = timedelta(days=7)
    #: The egress service that records rooms (``grpc://host:port``); empty: recording is off.
    egress_url: str = ""
    #: The AI service that transcribes and summarizes recordings (``grpc://host:port``): a
    #: saved transcript recording (or one started with ``transcribe``) is sent to it; empty:
    #: recordings are only saved.
    ai_url: str = ""
    #: Control's own API key (``pk_id.secret``, with ``egress:manage``, and ``ai:read`` and
    #: ``ai:write`` for transcribing recordings), sent to the egress and AI services.
    service_api_key: str = field(default="", repr=False)
    #: Where recordings are stored: a local folder (the egress's own, mounted here too), or an
    #: S3 bucket (``s3_endpoint`` for an S3-compatible store; credentials from the standard
    #: AWS variables). The bucket wins when both are set.
    recordings_dir: Path | None = None
    recordings_bucket: str = ""
    s3_endpoint: str = ""
    #: The storage tells control when a file is written (``RecordingService.NotifyStorageEvent``):
    #: a recording is then ``SAVED`` only once the storage says so, not when the egress does.
    recording_storage_events: bool = False
    #: A recording whose egress has not reported for this long fails.
    recording_report_timeout: timedelta = timedelta(seconds=30)
    #: How long a download link works.
    download_link_ttl: timedelta = timedelta(minutes=5)
    #: Signs download tokens for files in ``recordings_dir`` (the gateway checks them; at
    #: least 32 bytes).
    files_secret: str = field(default="", repr=False)

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
        try:
            parse_networks(self.webhook_allowed_networks)
        except ValueError as exc:
            raise ConfigurationError(f"webhook_allowed_networks: {exc}") from exc
        for name in ("webhook_retry_initial", "webhook_timeout", "webhook_breaker_pause", "webhook_poll_interval"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(f"{name} must be positive")
        if self.webhook_retry_max_interval < self.webhook_retry_initial:
            raise ConfigurationError("webhook_retry_max_interval must be at least webhook_retry_initial")
        if self.webhook_breaker_failures < 1 or self.webhook_concurrency < 1:
            raise ConfigurationError("webhook_breaker_failures and webhook_concurrency must be at least 1")
        if self.service_api_key and not (self.service_api_key.startswith("pk_") and "." in self.service_api_key):
            raise ConfigurationError("service_api_key must be an API key, pk_<id>.<secret>")
        if self.files_secret and len(self.files_secret.encode()) < MIN_SECRET_BYTES:
            raise ConfigurationError(f"files_secret must be at least {MIN_SECRET_BYTES} bytes")
        for name in ("recording_report_timeout", "download_link_ttl"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(f"{name} must be positive")
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
