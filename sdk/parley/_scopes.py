"""Values the contracts enumerate as allowed strings (a ``buf.validate`` ``in`` rule), read from
the descriptors so that control, the CLI and ``parley.testing`` never keep a copy that drifts:
the scopes an API key may hold and the event types a webhook may ask for."""

from __future__ import annotations

from buf.validate import validate_pb2
from google.protobuf.descriptor import Descriptor

from .control.v1 import resources_pb2, webhook_service_pb2

__all__ = ["API_KEY_SCOPES", "WEBHOOK_EVENT_TYPES", "allowed_strings"]


def allowed_strings(message: Descriptor, field: str) -> tuple[str, ...]:
    """The strings a repeated string field's items may take (its ``in`` rule)."""
    rules = message.fields_by_name[field].GetOptions().Extensions[validate_pb2.field]
    return tuple(getattr(rules.repeated.items.string, "in"))


API_KEY_SCOPES = allowed_strings(resources_pb2.ApiKey.DESCRIPTOR, "scopes")
#: ``Webhook.event_types``' allowed values: the ``WebhookEvent.event`` types.
WEBHOOK_EVENT_TYPES = allowed_strings(webhook_service_pb2.Webhook.DESCRIPTOR, "event_types")
