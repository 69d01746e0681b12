"""Redaction of fields the contracts mark ``(parley.options.v1.sensitive)``, for logs."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor, json_format, message

from parley.options.v1 import options_pb2

REDACTED = "<redacted>"


def _is_sensitive(field: descriptor.FieldDescriptor) -> bool:
    return bool(field.GetOptions().Extensions[options_pb2.sensitive])


def _scrub(msg: message.Message) -> None:
    for field, value in msg.ListFields():
        if _is_sensitive(field):
            if field.type == descriptor.FieldDescriptor.TYPE_STRING and not field.is_repeated:
                setattr(msg, field.name, REDACTED)
            else:
                msg.ClearField(field.name)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            for item in value if field.is_repeated else [value]:
                _scrub(item)


def redacted(msg: message.Message) -> dict[str, Any]:
    """The message as JSON-ready data with every sensitive field replaced by ``<redacted>``."""
    copy = type(msg)()
    copy.CopyFrom(msg)
    _scrub(copy)
    return json_format.MessageToDict(copy)
