"""The public names of each package are deliberate: changing them is an API change."""

from __future__ import annotations

import ai
import control
import parley
import sfu


def test_sdk_public_names() -> None:
    assert sorted(parley.__all__) == sorted(
        [
            "API_KEY_SCOPES",
            "DEFAULT_TTL",
            "MIN_SECRET_BYTES",
            "REDACTED",
            "TRACK_SOURCES",
            "TRACK_SOURCE_NAMES",
            "TRACK_SOURCE_VALUES",
            "WEBHOOK_CONTENT_TYPE",
            "Aborted",
            "AlreadyExists",
            "ApiKeys",
            "Cancelled",
            "Egresses",
            "FileClaims",
            "RecordingModeName",
            "Recordings",
            "egress_path",
            "parse_egress_path",
            "parse_recording_path",
            "recording_path",
            "sign_file_token",
            "verify_file_token",
            "Client",
            "Credentials",
            "DataLoss",
            "DeadlineExceeded",
            "FailedPrecondition",
            "FieldViolation",
            "Internal",
            "InvalidArgument",
            "InvalidTokenError",
            "JoinTokenClaims",
            "Lobby",
            "Meetings",
            "NotFound",
            "OutOfRange",
            "ParleyError",
            "PermissionDenied",
            "ResourceExhausted",
            "RoomAccesses",
            "Rooms",
            "TrackSourceName",
            "Unauthenticated",
            "Unavailable",
            "Unimplemented",
            "Users",
            "Webhooks",
            "VideoGrants",
            "api_key_path",
            "create_join_token",
            "default_data_dir",
            "load_credentials",
            "lobby_entry_path",
            "meeting_path",
            "parse_api_key_path",
            "parse_lobby_entry_path",
            "parse_meeting_path",
            "parse_room_access_path",
            "parse_room_path",
            "parse_user_path",
            "parse_webhook_delivery_path",
            "parse_webhook_path",
            "redacted",
            "room_access_path",
            "room_path",
            "save_credentials",
            "sign_webhook",
            "user_path",
            "verify_join_token",
            "verify_webhook",
            "webhook_delivery_path",
            "webhook_path",
        ]
    )
    for name in parley.__all__:
        assert hasattr(parley, name), name


def test_control_public_names() -> None:
    assert sorted(control.__all__) == sorted(
        [
            "ALL_SCOPES",
            "SERVICE_NAMES",
            "AlreadyExists",
            "ConfigurationError",
            "ControlError",
            "ControlPlane",
            "ControlServer",
            "ControlSettings",
            "FailedPrecondition",
            "InvalidArgument",
            "NotFound",
            "OidcSettings",
            "PermissionDenied",
            "Unauthenticated",
        ]
    )


def test_sfu_public_names() -> None:
    assert sorted(sfu.__all__) == sorted(
        [
            *("SERVICE_NAMES", "SfuServer", "SfuSettings", "record_forwarding_delays"),
            *("Coturn", "CoturnMissing", "turn_credentials"),
            *("SfuWorkers", "worker_count"),
        ]
    )
    for name in sfu.__all__:
        assert hasattr(sfu, name), name


def test_ai_public_names() -> None:
    assert sorted(ai.__all__) == sorted(
        [
            "SERVICE_NAMES",
            "AiError",
            "AiServer",
            "AiSettings",
            "ConfigurationError",
            "start_runtime",
            # the pipeline's building blocks, which the benchmarks use
            "LlamaCppEngine",
            "Segment",
            "SpeakerTurn",
            "SpeechModel",
            "SpeechPool",
            "SpeechPoolOptions",
            "attribute_speakers",
            "decode_audio",
            "interleave_speakers",
            "merge",
            "plan_chunks",
            "plan_condensed",
            "resolve_model",
            "smollm2_gguf_path",
            "start_ray",
            "summarize",
            "to_text",
            "tokens_per_second",
        ]
    )
    for name in ai.__all__:
        assert hasattr(ai, name), name


def test_resource_names_round_trip() -> None:
    assert parley.parse_room_path(parley.room_path("abc-defg-hij")) == "abc-defg-hij"
    assert parley.parse_room_access_path(parley.room_access_path("r1", "a" * 32)) == ("r1", "a" * 32)
    assert parley.parse_lobby_entry_path(parley.lobby_entry_path("r1", "b" * 32)) == ("r1", "b" * 32)
    assert parley.parse_meeting_path(parley.meeting_path("r1", "d" * 32)) == ("r1", "d" * 32)
    assert parley.meeting_path("r1", f"rooms/r2/meetings/{'d' * 32}") == f"rooms/r2/meetings/{'d' * 32}"
    assert parley.parse_user_path(parley.user_path("me")) == "me"
    recording = f"rooms/r2/recordings/{'e' * 32}"
    assert parley.parse_recording_path(parley.recording_path("r1", "e" * 32)) == ("r1", "e" * 32)
    assert parley.recording_path("r1", recording) == recording
    assert parley.parse_egress_path(parley.egress_path("f" * 32)) == "f" * 32
    assert parley.egress_path(f"egresses/{'f' * 32}") == f"egresses/{'f' * 32}"
    webhook, delivery = "a" * 32, "b" * 32
    assert parley.parse_webhook_path(parley.webhook_path(webhook)) == webhook
    assert parley.parse_webhook_delivery_path(parley.webhook_delivery_path(webhook, delivery)) == (webhook, delivery)
    assert parley.parse_api_key_path(parley.api_key_path("pk_" + "c" * 24)) == "pk_" + "c" * 24


def test_credentials_precedence(tmp_path: object) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    parley.save_credentials(folder, parley.Credentials(url="saved:1", api_key="pk_saved", api_secret="s1"))
    assert parley.load_credentials(data_dir=folder, env={}).url == "saved:1"
    env = {"PARLEY_URL": "env:2", "PARLEY_API_KEY": "pk_env", "PARLEY_API_SECRET": "s2"}
    from_env = parley.load_credentials(data_dir=folder, env=env)
    assert (from_env.url, from_env.api_key) == ("env:2", "pk_env")
    explicit = parley.load_credentials(url="arg:3", data_dir=folder, env=env)
    assert explicit.url == "arg:3" and explicit.bearer == "pk_env.s2"
    assert (folder / "credentials.json").stat().st_mode & 0o077 == 0


def test_the_sdk_and_cli_import_no_service_packages() -> None:
    """`import parley` and the `parley` command stay light: the services' packages (and the
    room client's aiortc) are imported only by what needs them (tests/test_wheel.py checks
    that they are not even installed)."""
    import subprocess
    import sys

    heavy = ["ai", "aiortc", "alembic", "av", "boto3", "control", "faster_whisper", "gateway", "numpy", "psycopg"]
    heavy += ["ray", "redis", "sfu", "sqlalchemy", "starlette", "uvicorn", "authlib", "httpx", "protovalidate"]
    heavy += ["prometheus_client", "opentelemetry"]
    script = "import sys, parley, parley.cli, launcher; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout.split()
    )
    assert loaded & set(heavy) == set()
