"""Typed errors: each gRPC code raises its own ``parley`` exception, so that a caller writes
``except parley.NotFound``; every failure is still a ``ParleyError`` with its details."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

import parley
from parley import Client, ParleyError
from parley.control.v1 import resources_pb2 as res

from .conftest import Callers

#: Every code but OK and its exception; UNKNOWN stays the root.
CODES: dict[grpc.StatusCode, type[ParleyError]] = {
    grpc.StatusCode.CANCELLED: parley.Cancelled,
    grpc.StatusCode.UNKNOWN: ParleyError,
    grpc.StatusCode.INVALID_ARGUMENT: parley.InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: parley.DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: parley.NotFound,
    grpc.StatusCode.ALREADY_EXISTS: parley.AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: parley.PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: parley.ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: parley.FailedPrecondition,
    grpc.StatusCode.ABORTED: parley.Aborted,
    grpc.StatusCode.OUT_OF_RANGE: parley.OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: parley.Unimplemented,
    grpc.StatusCode.INTERNAL: parley.Internal,
    grpc.StatusCode.UNAVAILABLE: parley.Unavailable,
    grpc.StatusCode.DATA_LOSS: parley.DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: parley.Unauthenticated,
}


def test_every_code_has_its_class() -> None:
    assert set(CODES) == set(grpc.StatusCode) - {grpc.StatusCode.OK}
    subclasses = [c for c in CODES.values() if c is not ParleyError]
    assert len(set(subclasses)) == len(subclasses)
    assert all(issubclass(c, ParleyError) and c.__name__ in parley.__all__ for c in subclasses)


@pytest.mark.parametrize("code", list(CODES), ids=lambda c: str(c.name))
def test_status_maps_to_the_class_of_its_code(code: grpc.StatusCode) -> None:
    info = error_details_pb2.ErrorInfo(reason="WHY", domain="parley.dev")
    packed = any_pb2.Any()
    packed.Pack(info)
    status = status_pb2.Status(code=code.value[0], message="it failed", details=[packed])
    trailer = (("grpc-status-details-bin", status.SerializeToString()),)
    rpc_error = grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailer), details="it failed")
    for error in (ParleyError.from_status(status), ParleyError.from_rpc_error(rpc_error)):
        assert type(error) is CODES[code]
        assert error.code == code and error.message == "it failed" and error.reason == "WHY"
        assert str(error) == f"{code.name}: it failed"
        assert error.grpc_status == status  # and back, details packed again
    # A subclass built by hand carries its code.
    assert CODES[code]("by hand").code == code


def test_a_call_without_status_details_keeps_its_code_and_message() -> None:
    rpc_error = grpc.aio.AioRpcError(
        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), details="connection refused"
    )
    error = ParleyError.from_rpc_error(rpc_error)
    assert isinstance(error, parley.Unavailable)
    assert (error.message, error.details, error.reason, error.field_violations) == ("connection refused", (), "", [])


def test_field_violations_and_unknown_details() -> None:
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="room.slug", description="too short")]
    )
    unknown = any_pb2.Any(type_url="type.googleapis.com/example.Unknown", value=b"\x08\x01")
    packed = any_pb2.Any()
    packed.Pack(bad)
    error = ParleyError.from_status(status_pb2.Status(code=3, message="invalid", details=[packed, unknown]))
    assert isinstance(error, parley.InvalidArgument)
    assert error.field_violations == [parley.FieldViolation("room.slug", "too short")]
    assert error.details[1] == unknown  # kept packed, and sent on as it came
    assert list(error.grpc_status.details) == [packed, unknown]


def test_invalid_token_is_unauthenticated() -> None:
    error = parley.InvalidTokenError("expired")
    assert isinstance(error, parley.Unauthenticated) and error.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(parley.InvalidTokenError):
        parley.verify_join_token("not.a.token", secrets={"parley": "x" * 32})


async def _missing_room(callers: Callers) -> None:
    await callers.admin_key.rooms.get("no-such-room")


async def _bad_slug(callers: Callers) -> None:
    await callers.admin_key.rooms.create(slug="0123456789abcdef0123456789abcdef")


async def _unknown_key(callers: Callers) -> None:
    forged = callers.anonymous.with_bearer("pk_" + "0" * 24 + ".not-the-secret")
    await forged.rooms.create(display_name="x")


async def _missing_scope(callers: Callers) -> None:
    reader = await callers.key("rooms:read")
    await reader.api_keys.create(display_name="escalation", scopes=["keys:manage"])


async def _taken_slug(callers: Callers) -> None:
    slug = f"taken-{callers.server.port}"
    await callers.admin_key.rooms.create(slug=slug)
    await callers.admin_key.rooms.create(slug=slug)


async def _stale_etag(callers: Callers) -> None:
    room = await callers.admin_key.rooms.create(display_name="before")
    await callers.admin_key.rooms.update(res.Room(name=room.name, display_name="after"), update_mask=["display_name"])
    await callers.admin_key.rooms.delete(room.name, etag=room.etag)


@pytest.mark.parametrize(
    ("provoke", "expected", "reason"),
    [
        (_missing_room, parley.NotFound, "NOT_FOUND"),
        (_bad_slug, parley.InvalidArgument, "INVALID_ARGUMENT"),
        (_unknown_key, parley.Unauthenticated, "UNAUTHENTICATED"),
        (_missing_scope, parley.PermissionDenied, "PERMISSION_DENIED"),
        (_taken_slug, parley.AlreadyExists, "ALREADY_EXISTS"),
        (_stale_etag, parley.FailedPrecondition, "ETAG_MISMATCH"),
    ],
    ids=lambda v: getattr(v, "__name__", v),
)
async def test_control_errors_raise_their_class(
    callers: Callers, provoke: Callable[[Callers], Awaitable[None]], expected: type[ParleyError], reason: str
) -> None:
    with pytest.raises(expected) as caught:  # `except parley.NotFound:` catches it
        await provoke(callers)
    assert type(caught.value) is expected
    assert caught.value.code == expected.default_code and caught.value.reason == reason
    if expected is parley.InvalidArgument:
        assert [v.field for v in caught.value.field_violations] == ["room.slug"]


async def test_unreachable_server_is_unavailable() -> None:
    async with Client("127.0.0.1:1") as client:
        with pytest.raises(parley.Unavailable):
            await client.rooms.get("anything")
