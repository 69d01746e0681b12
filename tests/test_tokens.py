"""Join tokens and webhook signatures (SDK), without a server."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest

from parley import (
    InvalidTokenError,
    VideoGrants,
    create_join_token,
    sign_webhook,
    verify_join_token,
    verify_webhook,
)

SECRET = "s" * 40
GRANTS = VideoGrants(room="abc", can_publish_sources=("camera", "microphone"), room_admin=True)


def test_join_token_round_trip() -> None:
    token, expires = create_join_token(
        key_id="k1",
        secret=SECRET,
        identity="alice",
        name="Alice",
        grants=GRANTS,
        metadata='{"hand":false}',
        ttl=timedelta(minutes=5),
    )
    claims = verify_join_token(token, secrets={"k1": SECRET})
    assert claims.identity == "alice" and claims.name == "Alice" and claims.metadata == '{"hand":false}'
    assert claims.grants == GRANTS
    assert claims.expires_at == expires
    assert claims.grants.may_publish("camera") and not claims.grants.may_publish("screen_share")


def test_join_token_uses_livekit_claim_names() -> None:
    token, _ = create_join_token(key_id="k1", secret=SECRET, identity="alice", grants=GRANTS)
    video = jwt.decode(token, SECRET, algorithms=["HS256"])["video"]
    assert video["roomJoin"] is True and video["canPublishSources"] == ["camera", "microphone"]
    assert video["roomAdmin"] is True and video["room"] == "abc"


@pytest.mark.parametrize(
    ("secrets", "mangle", "message"),
    [
        ({"k2": SECRET}, lambda t: t, "unknown key"),
        ({"k1": "t" * 40}, lambda t: t, "invalid join token"),
        ({"k1": SECRET}, lambda t: t[:-3] + "abc", "invalid join token"),
        ({"k1": SECRET}, lambda t: "not-a-jwt", "malformed"),
    ],
)
def test_bad_join_tokens_are_refused(secrets: dict[str, str], mangle: object, message: str) -> None:
    token, _ = create_join_token(key_id="k1", secret=SECRET, identity="alice", grants=GRANTS)
    with pytest.raises(InvalidTokenError, match=message) as caught:
        verify_join_token(mangle(token), secrets=secrets)  # type: ignore[operator]
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_expired_join_token_is_refused() -> None:
    past = datetime.now(UTC) - timedelta(hours=2)
    token, _ = create_join_token(
        key_id="k1", secret=SECRET, identity="a", grants=GRANTS, ttl=timedelta(hours=1), now=past
    )
    with pytest.raises(InvalidTokenError, match="expired"):
        verify_join_token(token, secrets={"k1": SECRET})


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        create_join_token(key_id="k1", secret="short", identity="a", grants=GRANTS)


def test_unknown_source_in_claim_is_refused() -> None:
    claims = {
        "iss": "k1",
        "sub": "a",
        "exp": int((datetime.now(UTC) + timedelta(hours=1)).timestamp()),
        "video": {"room": "r", "canPublishSources": ["hologram"]},
    }
    with pytest.raises(InvalidTokenError, match="unknown source"):
        verify_join_token(jwt.encode(claims, SECRET, algorithm="HS256"), secrets={"k1": SECRET})


def test_webhook_round_trip_and_tampering() -> None:
    body = json.dumps({"event": "room_started", "room": {"name": "rooms/abc"}}).encode()
    header = sign_webhook(body, key_id="k1", secret=SECRET)
    assert verify_webhook(body, header, secrets={"k1": SECRET})["event"] == "room_started"
    assert verify_webhook(body, f"Bearer {header}", secrets={"k1": SECRET})["room"] == {"name": "rooms/abc"}
    with pytest.raises(InvalidTokenError, match="does not match"):
        verify_webhook(body + b" ", header, secrets={"k1": SECRET})
    with pytest.raises(InvalidTokenError, match="unknown key"):
        verify_webhook(body, header, secrets={"other": SECRET})
    with pytest.raises(InvalidTokenError, match="invalid webhook signature"):
        verify_webhook(body, header, secrets={"k1": "x" * 40})
