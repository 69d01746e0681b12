"""The SFU's settings, from ``PARLEY_SFU_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class SfuSettings:
    #: Join-token signing secrets by key id (control's ``PARLEY_TOKEN_SECRET`` is key ``parley``).
    token_secrets: Mapping[str, str] = field(default_factory=dict)
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
    #: Tracks one participant may publish at once.
    max_tracks_per_participant: int = 8
    #: STUN / TURN URLs handed to clients and used by the SFU's own peer connections.
    ice_servers: tuple[str, ...] = ()
    #: Redis of a multi-node deployment (``redis://host:6379/0``); empty: one node, no Redis.
    redis_url: str = ""
    #: Key prefix of the node registry in Redis.
    registry_prefix: str = "parley:sfu"
    #: How this node is reached by clients (``grpc://host:port``); default: its gRPC address.
    public_url: str = ""
    #: Seconds between heartbeats; a node silent for three is dead and its rooms move.
    heartbeat_interval: float = 2.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SfuSettings:
        env = os.environ if env is None else env
        secret = env.get("PARLEY_TOKEN_SECRET", "")
        if not secret:
            raise ValueError("PARLEY_TOKEN_SECRET is required: the secret control signs join tokens with")
        return cls(
            token_secrets={env.get("PARLEY_TOKEN_KEY_ID", "parley"): secret},
            grpc_address=env.get("PARLEY_SFU_GRPC_ADDRESS", cls.grpc_address),
            max_participants=int(env.get("PARLEY_SFU_MAX_PARTICIPANTS", cls.max_participants)),
            empty_timeout=float(env.get("PARLEY_SFU_EMPTY_TIMEOUT", cls.empty_timeout)),
            ice_servers=tuple(u for u in env.get("PARLEY_SFU_ICE_SERVERS", "").split(",") if u),
            redis_url=env.get("PARLEY_REDIS_URL", ""),
            public_url=env.get("PARLEY_SFU_PUBLIC_URL", ""),
        )
