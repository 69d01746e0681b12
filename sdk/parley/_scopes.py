"""The scopes an API key may hold, as the contract declares them (``ApiKey.scopes``' allowed
values), so control, the CLI and ``parley.testing`` never keep a copy that drifts."""

from __future__ import annotations

from buf.validate import validate_pb2

from .control.v1 import resources_pb2

__all__ = ["API_KEY_SCOPES"]

API_KEY_SCOPES: tuple[str, ...] = tuple(
    getattr(
        resources_pb2.ApiKey.DESCRIPTOR.fields_by_name["scopes"]
        .GetOptions()
        .Extensions[validate_pb2.field]
        .repeated.items.string,
        "in",
    )
)
