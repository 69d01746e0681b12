"""Helpers for Parley's own gRPC servers (control, ai, ...), shared through the SDK so every
service rejects bad input and reports errors the same way: protovalidate violations as
``google.rpc.BadRequest`` field violations, and ``google.rpc.Status`` with an ``ErrorInfo``
reason in the ``parley.dev`` domain."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import protovalidate
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = ["ERROR_DOMAIN", "error_status", "field_violations"]

ERROR_DOMAIN = "parley.dev"


def _field_path(violation: protovalidate.Violation) -> str:
    parts = []
    path = violation.proto.field
    for element in path.elements if path is not None else ():
        parts.append(element.field_name)
        subscript = element.subscript
        if subscript is not None:
            parts[-1] += f"[{subscript.value!r}]" if subscript.field != "index" else f"[{subscript.value}]"
    return ".".join(parts)


def field_violations(request: Message) -> list[tuple[str, str]]:
    """Every protovalidate rule ``request`` breaks, as ``(field path, description)``."""
    return [(_field_path(v), v.proto.message or v.proto.rule_id) for v in protovalidate.collect_violations(request)]


def error_status(
    code: grpc.StatusCode, message: str, *, reason: str, violations: Sequence[tuple[str, str]] = ()
) -> grpc.Status:
    """A ``grpc.Status`` carrying ``google.rpc.Status`` with an ErrorInfo (and a BadRequest
    when there are field violations), ready for ``context.abort``."""
    converted: grpc.Status = rpc_status.to_status(status_message(code, message, reason=reason, violations=violations))
    return converted


def status_message(
    code: grpc.StatusCode, message: str, *, reason: str, violations: Sequence[tuple[str, str]] = ()
) -> status_pb2.Status:
    """The ``google.rpc.Status`` of an error: an ErrorInfo, and a BadRequest when there are
    field violations (for errors sent inside a stream rather than ending it)."""
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)]
    if violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d) for f, d in violations
                ]
            )
        )
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    return status_pb2.Status(code=getattr(code_pb2, code.name), message=message, details=packed)
