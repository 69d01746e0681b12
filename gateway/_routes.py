"""REST routes derived from the ``google.api.http`` annotations of the contracts.

Nothing here names an RPC: every annotated method of every service in the descriptor pool
becomes a route, so a new annotated RPC appears in the REST API (and its OpenAPI document)
without gateway changes. Methods without an annotation stay gRPC-only, and so do
client-streaming ones even when annotated: a REST request is one message.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pool, message, message_factory

log = logging.getLogger(__name__)

#: A response of this type is answered as its raw ``data`` with its ``content_type``.
HTTP_BODY = "google.api.HttpBody"

_VARIABLE = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class Route:
    """One HTTP binding of one RPC."""

    http_method: str
    #: The annotation's path template, like ``/v1/{name=rooms/*}:join``.
    template: str
    pattern: re.Pattern[str]
    #: Request field paths bound by the path (``name``, ``room.name``), in template order.
    path_fields: tuple[str, ...]
    #: ``*`` (the whole request), a top-level field name, or empty (no body).
    body: str
    method: descriptor.MethodDescriptor
    request_type: type[message.Message] = field(repr=False)
    response_type: type[message.Message] = field(repr=False)

    @property
    def grpc_path(self) -> str:
        return f"/{self.method.containing_service.full_name}/{self.method.name}"

    @property
    def streaming(self) -> bool:
        return bool(self.method.server_streaming)

    @property
    def raw_response(self) -> bool:
        """Whether the RPC answers a ``google.api.HttpBody``: a file, not JSON."""
        return self.method.output_type.full_name == HTTP_BODY

    @property
    def package(self) -> str:
        """The proto package of the RPC's service, like ``parley.ai.v1``."""
        return self.method.containing_service.file.package

    @property
    def literal_length(self) -> int:
        """Length of the template's fixed text, to try the most specific routes first."""
        return len(_VARIABLE.sub("", self.template))


def _segment_regex(pattern: str) -> str:
    parts = []
    for segment in pattern.split("/"):
        if segment == "**":
            parts.append(r".+")
        elif segment == "*":
            parts.append(r"[^/:]+")
        else:
            parts.append(re.escape(segment))
    return "/".join(parts)


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The regex of a path template and the field paths its variables bind."""
    fields: list[str] = []
    regex = ""
    position = 0
    for match in _VARIABLE.finditer(template):
        regex += re.escape(template[position : match.start()])
        field_path, pattern = match.group(1), match.group(2) or "*"
        group = f"f{len(fields)}"
        fields.append(field_path)
        regex += f"(?P<{group}>{_segment_regex(pattern)})"
        position = match.end()
    regex += re.escape(template[position:])
    return re.compile(f"^{regex}$"), tuple(fields)


def _bindings(rule: http_pb2.HttpRule) -> Iterable[http_pb2.HttpRule]:
    yield rule
    yield from rule.additional_bindings


def _route(binding: http_pb2.HttpRule, method: descriptor.MethodDescriptor) -> Route:
    kind = binding.WhichOneof("pattern")
    if kind == "custom":
        http_method, template = binding.custom.kind.upper(), binding.custom.path
    else:
        http_method, template = str(kind).upper(), getattr(binding, str(kind))
    pattern, fields = compile_template(template)
    return Route(
        http_method=http_method,
        template=template,
        pattern=pattern,
        path_fields=fields,
        body=binding.body,
        method=method,
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
    )


def routes_for(service_names: Iterable[str], pool: descriptor_pool.DescriptorPool | None = None) -> list[Route]:
    """Every HTTP binding of the named services, most specific first."""
    pool = pool or descriptor_pool.Default()
    found = []
    for name in service_names:
        for method in pool.FindServiceByName(name).methods:
            options = method.GetOptions()
            if not options.HasExtension(annotations_pb2.http):
                continue  # gRPC-only, like a client-streaming upload
            if method.client_streaming:
                log.warning("%s is client-streaming: it has no REST route despite its annotation", method.full_name)
                continue
            found += [_route(b, method) for b in _bindings(options.Extensions[annotations_pb2.http])]
    return sorted(found, key=lambda r: -r.literal_length)


@dataclass(frozen=True)
class Match:
    route: Route
    #: Field path -> value captured from the URL.
    path_values: dict[str, str]


class Router:
    """Finds the route of an HTTP request."""

    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes
        self._by_method: dict[str, list[Route]] = {}
        for route in routes:
            self._by_method.setdefault(route.http_method, []).append(route)

    def match(self, http_method: str, path: str) -> Match | None:
        for route in self._by_method.get(http_method, []):
            found = route.pattern.match(path)
            if found:
                values = {name: found.group(f"f{i}") for i, name in enumerate(route.path_fields)}
                return Match(route, values)
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """The methods some route accepts at ``path`` (for 405 answers)."""
        return sorted({r.http_method for r in self.routes if r.pattern.match(path)})
