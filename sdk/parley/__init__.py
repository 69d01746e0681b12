"""Parley's Python SDK: the async client, join tokens, webhook verification and resource names.

The generated protocol package lives beside it as ``parley.<domain>.v1``.
"""

from ._client import ApiKeys, Client, Lobby, RoomAccesses, Rooms, Users
from ._config import Credentials, default_data_dir, load_credentials, save_credentials
from ._errors import FieldViolation, InvalidTokenError, ParleyError
from ._names import (
    api_key_path,
    lobby_entry_path,
    parse_api_key_path,
    parse_lobby_entry_path,
    parse_room_access_path,
    parse_room_path,
    parse_user_path,
    room_access_path,
    room_path,
    user_path,
)
from ._redact import REDACTED, redacted
from ._tokens import (
    DEFAULT_TTL,
    MIN_SECRET_BYTES,
    TRACK_SOURCE_NAMES,
    TRACK_SOURCE_VALUES,
    TRACK_SOURCES,
    JoinTokenClaims,
    TrackSourceName,
    VideoGrants,
    create_join_token,
    verify_join_token,
)
from ._webhooks import WEBHOOK_CONTENT_TYPE, sign_webhook, verify_webhook

__all__ = [
    "DEFAULT_TTL",
    "MIN_SECRET_BYTES",
    "REDACTED",
    "TRACK_SOURCES",
    "TRACK_SOURCE_NAMES",
    "TRACK_SOURCE_VALUES",
    "WEBHOOK_CONTENT_TYPE",
    "ApiKeys",
    "Client",
    "Credentials",
    "FieldViolation",
    "InvalidTokenError",
    "JoinTokenClaims",
    "Lobby",
    "ParleyError",
    "RoomAccesses",
    "Rooms",
    "TrackSourceName",
    "Users",
    "VideoGrants",
    "api_key_path",
    "create_join_token",
    "default_data_dir",
    "load_credentials",
    "lobby_entry_path",
    "parse_api_key_path",
    "parse_lobby_entry_path",
    "parse_room_access_path",
    "parse_room_path",
    "parse_user_path",
    "redacted",
    "room_access_path",
    "room_path",
    "save_credentials",
    "sign_webhook",
    "user_path",
    "verify_join_token",
    "verify_webhook",
]
