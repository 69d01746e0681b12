"""The server kit (``parley.server``): every settings field comes from the environment, the
interceptor chain is public and chainable, page tokens hide their scope, logs carry context."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import typing
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import grpc
import pytest

from ai import AiSettings
from ai._settings import ENV as AI_ENV
from control import ControlServer, ControlSettings
from control._settings import ENV as CONTROL_ENV
from gateway import GatewaySettings
from gateway._settings import ENV as GATEWAY_ENV
from parley import Client
from parley.control.v1 import room_service_pb2, room_service_pb2_grpc
from parley.server import (
    CallInput,
    ConfigurationError,
    EnvSpec,
    InvalidArgument,
    JsonFormatter,
    ServerInterceptor,
    configure_logging,
    decode_page_token,
    encode_page_token,
    log_context,
)
from parley.server._interceptors import StreamNext, UnaryNext
from sfu import SfuSettings
from sfu._settings import ENV as SFU_ENV

from .conftest import TOKEN_SECRET

# A valid value for each field whose rules a generic sample would break, and the variables of
# the fields read from several.
_SAMPLES: dict[str, str] = {
    "database_url": "sqlite:///elsewhere.db",
    "token_secret": "s" * 40,
    "session_secret": "t" * 40,
    "summary_engine": "openai",
    "summary_base_url": "http://llm.example/v1",
    "webhook_allowed_networks": "10.0.0.0/8",
    "service_api_key": "pk_sample.secret",
    "ai_url": "grpc://ai.example:50053",
    "files_secret": "f" * 40,
}
_READER_ENV: dict[str, dict[str, str]] = {
    "oidc": {
        "PARLEY_OIDC_ISSUER": "https://id.example",
        "PARLEY_OIDC_AUDIENCE": "parley",
        "PARLEY_OIDC_LEEWAY": "3",
        "PARLEY_OIDC_CLIENT_ID": "web",
        "PARLEY_OIDC_CLIENT_SECRET": "shh",
        "PARLEY_OIDC_SCOPES": "openid",
    },
    "token_secrets": {"PARLEY_TOKEN_SECRET": "k" * 40, "PARLEY_TOKEN_KEY_ID": "k2"},
    # Relays need their shared secret.
    "turn_urls": {"PARLEY_SFU_TURN_URLS": "turn:relay.example:3478", "PARLEY_SFU_TURN_SECRET": "s"},
}


def _sample(kind: Any, name: str, default: object) -> str:
    """A value for the field's variable that differs from its default."""
    if name in _SAMPLES:
        return _SAMPLES[name]
    if kind is bool:
        return "false" if default else "true"
    origin = typing.get_origin(kind)
    if origin is Literal:
        return str(typing.get_args(kind)[-1])
    if origin is tuple:
        return "a,b"
    if origin is not None and "Mapping" in str(origin):
        return "a=/x,b=/y"
    return {int: "7", float: "7.5", bool: "true", timedelta: "7", Path: "/tmp/elsewhere"}.get(kind, "sample")


@pytest.mark.parametrize(
    ("cls", "spec", "base"),
    [
        (ControlSettings, CONTROL_ENV, {"PARLEY_DATABASE_URL": "sqlite:///x.db", "PARLEY_TOKEN_SECRET": "y" * 32}),
        (
            AiSettings,
            AI_ENV,
            {"PARLEY_AI_DATABASE_URL": "sqlite:///x.db", "PARLEY_CONTROL_TARGET": "c:1", "PARLEY_AI_STORAGE": "/tmp/s"},
        ),
        (SfuSettings, SFU_ENV, {"PARLEY_TOKEN_SECRET": "y" * 32}),
        (GatewaySettings, GATEWAY_ENV, {"PARLEY_CONTROL_TARGET": "c:1", "PARLEY_SESSION_SECRET": "z" * 32}),
    ],
    ids=["control", "ai", "sfu", "gateway"],
)
def test_every_settings_field_is_read_from_the_environment(cls: type[Any], spec: EnvSpec, base: dict[str, str]) -> None:
    defaults = spec.load(cls, base)
    hints = typing.get_type_hints(cls)
    variables = spec.variables(cls)
    assert set(variables) == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        if f.name in _READER_ENV:
            env = {**base, **_READER_ENV[f.name]}
        else:
            (var,) = variables[f.name]
            env = {**base, var: _sample(hints[f.name], f.name, getattr(defaults, f.name))}
            if f.name == "summary_engine":
                env["PARLEY_AI_SUMMARY_BASE_URL"] = "http://llm.example/v1"
        loaded = spec.load(cls, env)
        assert getattr(loaded, f.name) != getattr(defaults, f.name), f"{cls.__name__}.{f.name} ignores {env}"


def test_the_sfu_reads_the_registry_prefix_control_and_the_gateway_read() -> None:
    env = {"PARLEY_TOKEN_SECRET": "y" * 32, "PARLEY_SFU_REGISTRY_PREFIX": "tenant-a:sfu"}
    assert SfuSettings.from_env(env).registry_prefix == "tenant-a:sfu"
    assert ControlSettings.from_env({**env, "PARLEY_DATABASE_URL": "sqlite:///x"}).sfu_registry_prefix == "tenant-a:sfu"


def test_malformed_values_name_their_variable() -> None:
    with pytest.raises(ConfigurationError, match="PARLEY_SFU_MAX_PARTICIPANTS"):
        SfuSettings.from_env({"PARLEY_TOKEN_SECRET": "y" * 32, "PARLEY_SFU_MAX_PARTICIPANTS": "many"})
    with pytest.raises(ConfigurationError, match="PARLEY_DEV_LOGIN: not a boolean"):
        ControlSettings.from_env(
            {"PARLEY_DATABASE_URL": "sqlite:///x", "PARLEY_TOKEN_SECRET": "y" * 32, "PARLEY_DEV_LOGIN": "sure"}
        )
    with pytest.raises(ConfigurationError, match="token_secrets is required: pass it or set PARLEY_TOKEN_SECRET"):
        SfuSettings.from_env({})


def test_page_tokens_round_trip_and_hide_their_scope() -> None:
    from datetime import UTC, datetime

    when = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    token = encode_page_token(when, "row-1", scope="jobs:owner-secret-id:filter")
    assert decode_page_token(token, scope="jobs:owner-secret-id:filter") == (when, "row-1")
    import base64

    assert b"owner-secret-id" not in base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    with pytest.raises(InvalidArgument, match="another query"):
        decode_page_token(token, scope="jobs:someone-else:filter")
    with pytest.raises(InvalidArgument, match="not a page token"):
        decode_page_token("garbage!", scope="x")


def test_json_logs_carry_the_context() -> None:
    stream = io.StringIO()
    configure_logging("INFO", format="json", env={})
    root = logging.getLogger()
    handler = root.handlers[0]
    handler.setStream(stream)  # type: ignore[attr-defined]
    try:
        with log_context(room="weekly", participant="alice"):
            logging.getLogger("sfu.test").info("track %s published", "TR_1")
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["message"] == "track TR_1 published"
        assert (line["room"], line["participant"], line["level"]) == ("weekly", "alice", "INFO")
        assert isinstance(JsonFormatter().format(logging.makeLogRecord({"msg": "x"})), str)
    finally:
        root.removeHandler(handler)
        root.setLevel(logging.WARNING)


class _Recorder(ServerInterceptor):
    """A user's own interceptor: sees each call's typed input, may refuse it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bool]] = []

    async def intercept_unary(self, input: CallInput, next: UnaryNext) -> Any:
        self.calls.append((input.service, input.method_name, input.response_streaming))
        if input.metadata.get("x-refuse"):
            raise InvalidArgument.field("x-refuse", "refused by a custom interceptor")
        return await next(input)

    async def intercept_stream(self, input: CallInput, next: StreamNext) -> AsyncIterator[Any]:
        self.calls.append((input.service, input.method_name, input.response_streaming))
        async for response in next(input):
            yield response


class _RecordingControl(ControlServer):
    def __init__(self, settings: ControlSettings, recorder: _Recorder) -> None:
        super().__init__(settings)
        # Innermost: after validation and authentication, as a service's own link would be.
        self._interceptors = (*self._interceptors, recorder)


async def test_a_custom_interceptor_joins_the_chain(tmp_path: Path) -> None:
    recorder = _Recorder()
    settings = ControlSettings(database_url=f"sqlite:///{tmp_path / 'c.db'}", token_secret=TOKEN_SECRET, dev_login=True)
    async with _RecordingControl(settings, recorder) as server, Client(server.target) as client:
        await client.users.dev_login("chain-user")
        assert recorder.calls == [("parley.control.v1.UserService", "DevLogin", False)]
        async with grpc.aio.insecure_channel(server.target) as channel:
            rooms = room_service_pb2_grpc.RoomServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await rooms.GetRoom(
                    room_service_pb2.GetRoomRequest(name="rooms/abc-defg-hij"), metadata=(("x-refuse", "1"),)
                )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "refused by a custom interceptor" in (refused.value.details() or "")
