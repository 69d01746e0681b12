"""JSON/HTTP <-> protobuf/gRPC, the way grpc-gateway does it.

Request: path variables, then the body (``*`` or one field), then query parameters for the
remaining fields; a PATCH without ``update_mask`` gets one made of the body's fields. Unknown
fields and malformed JSON are errors. Response: the proto JSON mapping (lowerCamelCase).
Errors: the gRPC code as an HTTP status with the ``google.rpc.Status`` JSON as body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
from google.api import field_behavior_pb2
from google.protobuf import descriptor, json_format, message
from google.rpc import code_pb2

from parley import ParleyError

from ._routes import Match

_WELL_KNOWN_SCALARS = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.FieldMask",
    "google.protobuf.Struct",
    "google.protobuf.Value",
}

#: grpc-gateway's mapping of gRPC codes to HTTP statuses.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}


class TranscodeError(Exception):
    """The HTTP request cannot become a request message (HTTP 400 with a Status body)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


def status_body(code: grpc.StatusCode, text: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The ``google.rpc.Status`` JSON grpc-gateway answers errors with."""
    return {"code": code.value[0], "message": text, "details": details or []}


def error_from_rpc(error: grpc.aio.AioRpcError) -> tuple[int, dict[str, Any]]:
    """HTTP status and Status JSON of a failed call, details included (read by the SDK's one
    parser of ``google.rpc.Status``)."""
    status = ParleyError.from_rpc_error(error).grpc_status
    body = json_format.MessageToDict(status, always_print_fields_with_no_presence=True)
    return HTTP_STATUS.get(error.code(), 500), body


def bad_request_body(error: TranscodeError) -> dict[str, Any]:
    details = []
    if error.field:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": error.field, "description": error.message}],
            }
        )
    return {"code": code_pb2.INVALID_ARGUMENT, "message": error.message, "details": details}


def _field_by_name(desc: descriptor.Descriptor, name: str) -> descriptor.FieldDescriptor | None:
    """A field by proto name or JSON name."""
    found = desc.fields_by_name.get(name)
    if found is not None:
        return found
    return next((f for f in desc.fields if f.json_name == name), None)


def _set_path_field(request: message.Message, field_path: str, value: str) -> None:
    target = request
    parts = field_path.split(".")
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], value)


def _scalar(field: descriptor.FieldDescriptor, raw: str, key: str) -> Any:
    try:
        if field.type == descriptor.FieldDescriptor.TYPE_BOOL:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if field.type == descriptor.FieldDescriptor.TYPE_ENUM and field.enum_type is not None:
            value = field.enum_type.values_by_name.get(raw)
            return value.number if value is not None else int(raw)
        if field.cpp_type in (
            descriptor.FieldDescriptor.CPPTYPE_INT32,
            descriptor.FieldDescriptor.CPPTYPE_INT64,
            descriptor.FieldDescriptor.CPPTYPE_UINT32,
            descriptor.FieldDescriptor.CPPTYPE_UINT64,
        ):
            return int(raw)
        if field.cpp_type in (descriptor.FieldDescriptor.CPPTYPE_FLOAT, descriptor.FieldDescriptor.CPPTYPE_DOUBLE):
            return float(raw)
        if field.type == descriptor.FieldDescriptor.TYPE_BYTES:
            return raw.encode()
    except ValueError as exc:
        raise TranscodeError(f"query parameter {key!r}: {raw!r} is not a valid {field.name}", field=key) from exc
    return raw


def _apply_query(request: message.Message, query: Mapping[str, list[str]], bound: set[str]) -> None:
    for key, values in query.items():
        target: message.Message = request
        parts = key.split(".")
        path = []
        for i, part in enumerate(parts):
            field = _field_by_name(target.DESCRIPTOR, part)  # type: ignore[arg-type]
            if field is None:
                raise TranscodeError(f"unknown query parameter {key!r}", field=key)
            path.append(field.name)
            if ".".join(path) in bound:
                raise TranscodeError(f"{key!r} is already given by the path or body", field=key)
            if i < len(parts) - 1:
                if field.message_type is None or field.is_repeated:
                    raise TranscodeError(f"query parameter {key!r} does not name a field", field=key)
                target = getattr(target, field.name)
                continue
            if field.message_type is not None:
                if field.message_type.full_name not in _WELL_KNOWN_SCALARS:
                    raise TranscodeError(f"query parameter {key!r} names a message; set its fields", field=key)
                try:
                    if field.message_type.full_name == "google.protobuf.FieldMask" and "_" in values[-1]:
                        # grpc-gateway also takes proto field names: update_mask=display_name
                        getattr(target, field.name).paths.extend(p.strip() for p in values[-1].split(","))
                        continue
                    # Well-known types take their JSON string form: "2026-01-01T00:00:00Z", "3.5s"...
                    json_format.Parse(json.dumps(values[-1]), getattr(target, field.name))
                except json_format.ParseError as exc:
                    raise TranscodeError(f"query parameter {key!r}: {exc}", field=key) from exc
            else:
                try:
                    if field.is_repeated:
                        getattr(target, field.name).extend(_scalar(field, v, key) for v in values)
                    else:
                        setattr(target, field.name, _scalar(field, values[-1], key))
                except (ValueError, TypeError) as exc:  # e.g. an integer out of the field's range
                    raise TranscodeError(f"query parameter {key!r}: {exc}", field=key) from exc


def _updatable(field: descriptor.FieldDescriptor) -> bool:
    """Whether a body field is something to change (not a name, etag or output-only field)."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    fixed = {field_behavior_pb2.IDENTIFIER, field_behavior_pb2.OUTPUT_ONLY, field_behavior_pb2.IMMUTABLE}
    return field.name not in ("name", "etag") and not fixed.intersection(behaviors)


def _mask_paths(desc: descriptor.Descriptor, body: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Field paths set in a JSON body, for an update_mask the client left out."""
    paths = []
    for key, value in body.items():
        field = _field_by_name(desc, key)
        if field is None or not _updatable(field):
            continue
        path = prefix + field.name
        nested = field.message_type
        if (
            isinstance(value, dict)
            and nested is not None
            and not field.is_repeated
            and nested.full_name not in _WELL_KNOWN_SCALARS
            and value
        ):
            paths += _mask_paths(nested, value, path + ".")
        else:
            paths.append(path)
    return paths


def build_request(match: Match, body: bytes, query: Mapping[str, list[str]]) -> message.Message:
    """The request message of an HTTP request that matched ``match``."""
    route = match.route
    request = route.request_type()
    bound = set(match.path_values)
    if route.body:
        try:
            payload = json.loads(body) if body.strip() else {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TranscodeError(f"the body is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise TranscodeError("the body nests JSON too deeply") from exc
        try:
            if route.body == "*":
                if not isinstance(payload, dict):
                    raise TranscodeError("the body must be a JSON object")
                json_format.ParseDict(payload, request)
                bound |= {f.name for f in request.DESCRIPTOR.fields}
            else:
                field = request.DESCRIPTOR.fields_by_name[route.body]
                if field.message_type is not None:
                    if not isinstance(payload, dict):
                        raise TranscodeError(f"the body must be a JSON object ({field.message_type.name})")
                    json_format.ParseDict(payload, getattr(request, route.body))
                    mask = request.DESCRIPTOR.fields_by_name.get("update_mask")
                    if (
                        route.http_method == "PATCH"
                        and mask is not None
                        and "update_mask" not in query
                        and "updateMask" not in query
                    ):
                        paths = _mask_paths(field.message_type, payload)  # type: ignore[arg-type]
                        request.update_mask.paths.extend(paths)  # type: ignore[attr-defined]
                else:
                    json_format.ParseDict({field.json_name: payload}, request)
                bound.add(route.body)
        except (json_format.ParseError, RecursionError) as exc:
            raise TranscodeError(f"the body does not fit {route.method.input_type.name}: {exc}") from exc
    elif body.strip():
        raise TranscodeError(f"{route.http_method} {route.template} takes no body")
    for field_path, value in match.path_values.items():
        _set_path_field(request, field_path, value)
    _apply_query(request, query, bound)
    return request


def to_json(response: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(response)
