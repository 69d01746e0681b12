"""Server plumbing: health and reflection services, configuration errors."""

from __future__ import annotations

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from control import SERVICE_NAMES, ConfigurationError, ControlSettings

from .conftest import Callers


async def test_health_reports_every_service_serving(callers: Callers) -> None:
    stub = health_pb2_grpc.HealthStub(callers.anonymous.channel)
    for service in ("", *SERVICE_NAMES):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service))  # type: ignore[attr-defined]
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_services(callers: Callers) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(callers.anonymous.channel)  # type: ignore[arg-type]
    call = stub.ServerReflectionInfo()  # type: ignore[operator]
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert set(SERVICE_NAMES) <= names


def test_settings_from_environment() -> None:
    env = {
        "PARLEY_DATABASE_URL": "sqlite:///x.db",
        "PARLEY_TOKEN_SECRET": "y" * 32,
        "PARLEY_DEV_LOGIN": "false",
        "PARLEY_OIDC_ISSUER": "https://id.example",
        "PARLEY_OIDC_AUDIENCE": "parley",
    }
    settings = ControlSettings.from_env(env, sfu_url="wss://sfu.example")
    assert not settings.dev_login
    assert settings.oidc is not None
    assert settings.oidc.audience == "parley"
    assert settings.sfu_url == "wss://sfu.example"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "database_url is required"),
        ({"PARLEY_DATABASE_URL": "sqlite:///x.db"}, "PARLEY_TOKEN_SECRET"),
        ({"PARLEY_DATABASE_URL": "sqlite:///x.db", "PARLEY_TOKEN_SECRET": "short"}, "at least 32 bytes"),
        (
            {
                "PARLEY_DATABASE_URL": "sqlite:///x.db",
                "PARLEY_TOKEN_SECRET": "y" * 32,
                "PARLEY_OIDC_ISSUER": "https://i",
            },
            "PARLEY_OIDC_AUDIENCE",
        ),
    ],
)
def test_configuration_errors_say_what_is_missing(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ControlSettings.from_env(env)


def test_unknown_database_scheme_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="or sqlite:///path, not mysql"):
        ControlSettings(database_url="mysql://nope", token_secret="y" * 32)


def test_dev_login_and_oidc_cannot_both_be_on() -> None:
    from control import OidcSettings

    with pytest.raises(ConfigurationError, match="cannot both be on"):
        ControlSettings(
            database_url="sqlite:///x.db",
            token_secret="y" * 32,
            dev_login=True,
            oidc=OidcSettings(issuer="https://id.example", audience="parley"),
        )
