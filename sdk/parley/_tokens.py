"""Join tokens: LiveKit-style JWTs (HS256) that let a participant into one room's meeting.

Control issues them; the SFU verifies them with no call back to control. Services holding
the signing secret may also mint their own with :func:`create_join_token`.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, cast, get_args

import jwt

from ._enums import EnumNames
from ._errors import InvalidTokenError
from .control.v1 import resources_pb2

#: The short names of ``parley.control.v1.TrackSource`` (tests/test_enums.py keeps them equal).
TrackSourceName = Literal["camera", "microphone", "screen_share", "screen_share_audio"]
TRACK_SOURCES: tuple[TrackSourceName, ...] = get_args(TrackSourceName)
_SOURCES = EnumNames(resources_pb2.TrackSource)
#: Each source's ``parley.control.v1.TrackSource`` value, and back (read from the contract).
TRACK_SOURCE_VALUES: dict[str, resources_pb2.TrackSource.ValueType] = dict(_SOURCES.values)
TRACK_SOURCE_NAMES: dict[int, TrackSourceName] = cast(dict[int, TrackSourceName], dict(_SOURCES.names))

DEFAULT_TTL = timedelta(hours=6)
MIN_SECRET_BYTES = 32
_ALGORITHM = "HS256"


@dataclass(frozen=True, kw_only=True)
class VideoGrants:
    """What a token holder may do in the meeting of ``room`` (LiveKit's video grant)."""

    room: str
    room_join: bool = True
    can_publish: bool = True
    can_subscribe: bool = True
    can_publish_data: bool = True
    #: Sources the holder may publish; empty with ``can_publish`` means every source.
    can_publish_sources: tuple[TrackSourceName, ...] = ()
    hidden: bool = False
    recorder: bool = False
    room_admin: bool = False
    can_mute_others: bool = False

    def may_publish(self, source: TrackSourceName) -> bool:
        """Whether a track of ``source`` may be published under these grants."""
        return self.can_publish and (not self.can_publish_sources or source in self.can_publish_sources)

    def to_claim(self) -> dict[str, Any]:
        return {
            "room": self.room,
            "roomJoin": self.room_join,
            "canPublish": self.can_publish,
            "canSubscribe": self.can_subscribe,
            "canPublishData": self.can_publish_data,
            "canPublishSources": list(self.can_publish_sources),
            "hidden": self.hidden,
            "recorder": self.recorder,
            "roomAdmin": self.room_admin,
            "canMuteOthers": self.can_mute_others,
        }

    @classmethod
    def from_claim(cls, claim: Mapping[str, Any]) -> VideoGrants:
        sources = claim.get("canPublishSources") or []
        if not isinstance(sources, list) or any(s not in TRACK_SOURCES for s in sources):
            raise InvalidTokenError("video.canPublishSources names an unknown source")
        room = claim.get("room")
        if not isinstance(room, str) or not room:
            raise InvalidTokenError("video.room is missing")

        def flag(key: str, default: bool) -> bool:
            value = claim.get(key, default)
            if not isinstance(value, bool):
                raise InvalidTokenError(f"video.{key} must be a boolean")
            return value

        return cls(
            room=room,
            room_join=flag("roomJoin", False),
            can_publish=flag("canPublish", False),
            can_subscribe=flag("canSubscribe", False),
            can_publish_data=flag("canPublishData", False),
            can_publish_sources=tuple(sources),
            hidden=flag("hidden", False),
            recorder=flag("recorder", False),
            room_admin=flag("roomAdmin", False),
            can_mute_others=flag("canMuteOthers", False),
        )


@dataclass(frozen=True, kw_only=True)
class JoinTokenClaims:
    """The verified content of a join token."""

    identity: str
    name: str
    metadata: str
    grants: VideoGrants
    key_id: str
    expires_at: datetime
    token_id: str = field(default="")


def create_join_token(
    *,
    key_id: str,
    secret: str,
    identity: str,
    grants: VideoGrants,
    name: str = "",
    metadata: str = "",
    ttl: timedelta = DEFAULT_TTL,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """Signs a join token; returns it with its expiry.

    Args:
        key_id: Names the signing secret (the JWT ``iss``), so verifiers can rotate secrets.
        secret: The signing secret, at least 32 bytes.
        identity: The participant identity (``sub``), unique within the room.
        grants: What the participant may do.
        name: Display name shown to others.
        metadata: Application data handed to the others.
        ttl: How long the token is valid.
        now: The issue time (tests).
    """
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"the signing secret must be at least {MIN_SECRET_BYTES} bytes")
    if not identity:
        raise ValueError("identity must not be empty")
    issued = now or datetime.now(UTC)
    expires = issued + ttl
    claims = {
        "iss": key_id,
        "sub": identity,
        "name": name,
        "metadata": metadata,
        "nbf": int(issued.timestamp()) - 1,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
        "jti": _secrets.token_hex(8),
        "video": grants.to_claim(),
    }
    return jwt.encode(claims, secret, algorithm=_ALGORITHM), expires.replace(microsecond=0)


def verify_join_token(
    token: str, *, secrets: Mapping[str, str], leeway: timedelta = timedelta(seconds=10)
) -> JoinTokenClaims:
    """Checks a join token's signature, expiry and shape.

    Args:
        token: The JWT.
        secrets: Signing secrets by key id (the token's ``iss`` picks one).
        leeway: Clock skew tolerated on ``exp`` and ``nbf``.

    Raises:
        InvalidTokenError: The token is malformed, expired, or not signed by a known secret.
    """
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"malformed join token: {exc}") from exc
    key_id = unverified.get("iss")
    if not isinstance(key_id, str) or key_id not in secrets:
        raise InvalidTokenError("join token signed by an unknown key")
    try:
        claims = jwt.decode(
            token,
            secrets[key_id],
            algorithms=[_ALGORITHM],
            leeway=leeway,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidTokenError("join token has expired") from exc
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(f"invalid join token: {exc}") from exc
    video = claims.get("video")
    if not isinstance(video, dict):
        raise InvalidTokenError("join token carries no video grant")
    return JoinTokenClaims(
        identity=str(claims["sub"]),
        name=str(claims.get("name", "")),
        metadata=str(claims.get("metadata", "")),
        grants=VideoGrants.from_claim(video),
        key_id=key_id,
        expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        token_id=str(claims.get("jti", "")),
    )
