"""The SFU's settings: explicit arguments, else ``PARLEY_SFU_*`` environment variables (and the
``PARLEY_TOKEN_*`` / ``PARLEY_REDIS_URL`` ones it shares with control), else a clear error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from parley.server import ConfigurationError, EnvSpec, parse_value

__all__ = ["ENV", "ConfigurationError", "SfuSettings"]


@dataclass(frozen=True, kw_only=True)
class SfuSettings:
    #: Join-token signing secrets by key id (control's ``PARLEY_TOKEN_SECRET`` is key ``parley``).
    token_secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Where the signal and room-admin services listen.
    grpc_address: str = "127.0.0.1:7880"
    #: The most participants a room admits; 0: no limit.
    max_participants: int = 100
    #: Seconds a room stays open with no one in it.
    empty_timeout: float = 30.0
    #: How often clients ping; sessions silent for three intervals end.
    ping_interval: float = 10.0
    #: Seconds a client has to answer a subscriber offer before its session ends.
    answer_timeout: float = 30.0
    #: Seconds a session whose signal stream dropped (ended without ``leave``) waits for its
    #: client to resume it, the others told nothing; 0: a drop leaves the meeting at once.
    resume_grace: float = 15.0
    #: Tracks one participant may publish at once.
    max_tracks_per_participant: int = 8
    #: STUN URLs handed to clients and used by the SFU's own peer connections.
    ice_servers: tuple[str, ...] = ()
    #: TURN relays handed to clients (``turn:host:3478?transport=udp``, ``...?transport=tcp``,
    #: ``turns:host:5349?transport=tcp``), each client with a credential of its own made from
    #: ``turn_secret``.
    turn_urls: tuple[str, ...] = ()
    #: The relays' shared secret (coturn's ``static-auth-secret``).
    turn_secret: str = field(default="", repr=False)
    #: Seconds a TURN credential works: longer than a meeting, since a relay refreshes its
    #: allocation with the credential it got on joining.
    turn_credential_ttl: float = 12 * 3600.0
    #: Redis of a multi-node deployment (``redis://host:6379/0``); empty: one node, no Redis.
    redis_url: str = ""
    #: Key prefix of the node registry in Redis (the same as control's and the gateway's).
    registry_prefix: str = "parley:sfu"
    #: How this node is reached by clients (``grpc://host:port``); default: its gRPC address.
    public_url: str = ""
    #: Worker processes (``python -m sfu``): Python forwards packets on one core, so a machine
    #: with C cores runs C workers, each a node on the same Redis (over 1 needs ``redis_url``);
    #: 0: one per core. Worker i listens on the gRPC port + i (port 0: any free one each), and a
    #: ``public_url`` names it with ``{port}``.
    workers: int = 1
    #: Shares each subscriber's downlink by its bandwidth estimate: a subscriber on a slow link
    #: gets lower simulcast layers, or video paused, rather than losses. Off: every subscriber
    #: gets the layer it asks for, whatever its link.
    congestion_control: bool = True
    #: Seconds between heartbeats; a node silent for three is dead and its rooms move.
    heartbeat_interval: float = 2.0
    #: Control's gRPC address (``host:port``), where the node reports what happens in meetings
    #: (``PARLEY_CONTROL_TARGET``); empty: no reports (no meeting history, no webhooks).
    control_target: str = ""
    #: The API key the node reports with, ``pk_....sk_...`` (``key.secret``), holding the
    #: ``sfu:report`` scope (``PARLEY_SFU_REPORT_API_KEY``).
    report_api_key: str = field(default="", repr=False)
    #: Events kept for control while it is away; when full, the oldest are dropped.
    report_buffer: int = 10000

    def __post_init__(self) -> None:
        if self.turn_urls and not self.turn_secret:
            raise ConfigurationError("turn_urls need turn_secret (PARLEY_SFU_TURN_SECRET), the relays' shared secret")
        for url in self.turn_urls:
            if not url.startswith(("turn:", "turns:")):
                raise ConfigurationError(f"turn_urls: {url!r} is not a turn: or turns: URL")
        if self.turn_credential_ttl <= 0:
            raise ConfigurationError("turn_credential_ttl must be positive")
        if self.workers < 0:
            raise ConfigurationError("workers must be 0 (one per core) or more")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **explicit: object) -> SfuSettings:
        """Reads settings, explicit keyword arguments winning over the environment
        (``ENV.variables(SfuSettings)`` lists the variables)."""
        return ENV.load(cls, env, explicit)


def _token_secrets(env: Mapping[str, str]) -> Mapping[str, str] | None:
    """``PARLEY_SFU_TOKEN_SECRETS=kid=secret,...`` (several keys, during a rotation), else
    control's ``PARLEY_TOKEN_SECRET`` under ``PARLEY_TOKEN_KEY_ID`` (default ``parley``)."""
    if env.get("PARLEY_SFU_TOKEN_SECRETS"):
        try:
            secrets = parse_value(Mapping[str, str], env["PARLEY_SFU_TOKEN_SECRETS"])
        except ValueError as error:
            raise ConfigurationError(f"PARLEY_SFU_TOKEN_SECRETS: {error}") from None
        assert isinstance(secrets, dict)
        return secrets
    if env.get("PARLEY_TOKEN_SECRET"):
        return {env.get("PARLEY_TOKEN_KEY_ID", "parley"): env["PARLEY_TOKEN_SECRET"]}
    return None


#: Where each setting comes from: ``PARLEY_SFU_<FIELD>`` unless named here.
ENV = EnvSpec(
    prefix="PARLEY_SFU_",
    names={"redis_url": "PARLEY_REDIS_URL", "control_target": "PARLEY_CONTROL_TARGET"},
    readers={
        "token_secrets": (("PARLEY_TOKEN_SECRET", "PARLEY_SFU_TOKEN_SECRETS", "PARLEY_TOKEN_KEY_ID"), _token_secrets)
    },
    required=("token_secrets",),
)
