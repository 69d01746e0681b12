"""The OpenAPI 3.1 document of the REST API, and its interactive docs page.

Everything comes from the contracts: operations from the routes (``google.api.http``), texts
from the proto comments, ``required``/``readOnly`` from ``google.api.field_behavior``, and
JSON Schema keywords from the ``buf.validate`` rules that have one. Nothing here names an RPC,
so a new annotated RPC is documented without changes here. A ``google.api.HttpBody`` response
is a file of any media type, as the gateway answers it, not the JSON of the message.

Path variables that capture a resource name (``{name=rooms/*}``) are expanded into their
segments (``/v1/rooms/{room}``), the way protoc-gen-openapiv2's ``expand_slashed_path_patterns``
does: ``/v1/{name}`` would be the path of both GetRoom (``rooms/*``) and GetUser (``users/*``),
and clients then send the URL the gateway matches without escaping slashes.
"""

from __future__ import annotations

import json
import re
import string
import textwrap
from collections.abc import Iterable, Sequence
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from buf.validate import validate_pb2
from google.api import field_behavior_pb2, resource_pb2
from google.protobuf import descriptor, descriptor_pb2
from google.rpc import status_pb2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.routing import Route as HttpRoute
from starlette.staticfiles import StaticFiles

# The module, not its names: _app registers docs_routes, so it may be half-imported here.
from . import _app
from ._routes import _VARIABLE, Route, routes_for

Schema = dict[str, Any]
FD = descriptor.FieldDescriptor

OPENAPI_PATH = "/api/openapi.json"
DOCS_PATH = "/api/docs"

# One path segment as the router matches `*`; `.` and `..` never arrive (clients resolve them).
_SEGMENT: Schema = {"type": "string", "pattern": r"^(?!\.\.?$)[^/:]+$"}
_ANY_SEGMENTS: Schema = {"type": "string", "pattern": r"^.+$"}  # `**`

_INT64 = {"type": "string", "format": "int64", "pattern": r"^-?[0-9]+$"}  # proto3 JSON: int64 as string
_UINT64 = {"type": "string", "format": "uint64", "pattern": r"^[0-9]+$"}
_INT32 = {"type": "integer", "format": "int32"}
_UINT32 = {"type": "integer", "format": "uint32", "minimum": 0}
_SCALARS: dict[int, Schema] = {
    FD.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FD.TYPE_FLOAT: {"type": "number", "format": "float"},
    FD.TYPE_INT64: _INT64,
    FD.TYPE_SINT64: _INT64,
    FD.TYPE_SFIXED64: _INT64,
    FD.TYPE_UINT64: _UINT64,
    FD.TYPE_FIXED64: _UINT64,
    FD.TYPE_INT32: _INT32,
    FD.TYPE_SINT32: _INT32,
    FD.TYPE_SFIXED32: _INT32,
    FD.TYPE_UINT32: _UINT32,
    FD.TYPE_FIXED32: _UINT32,
    FD.TYPE_BOOL: {"type": "boolean"},
    FD.TYPE_STRING: {"type": "string"},
    FD.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}
_ZERO: dict[str, Any] = {"string": "", "integer": 0, "number": 0, "boolean": False}

# Well-known types have JSON forms of their own, not objects of their fields.
_WELL_KNOWN: dict[str, Schema] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string", "description": "Comma-separated lowerCamelCase field paths."},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
    **{
        f"google.protobuf.{name}Value": _SCALARS[kind]
        for name, kind in [
            ("Double", FD.TYPE_DOUBLE),
            ("Float", FD.TYPE_FLOAT),
            ("Int64", FD.TYPE_INT64),
            ("UInt64", FD.TYPE_UINT64),
            ("Int32", FD.TYPE_INT32),
            ("UInt32", FD.TYPE_UINT32),
            ("Bool", FD.TYPE_BOOL),
            ("String", FD.TYPE_STRING),
            ("Bytes", FD.TYPE_BYTES),
        ]
    },
}

# buf.validate rule -> JSON Schema keyword, for the rules with an exact equivalent.
_KEYWORDS = {
    "const": "const",
    "min_len": "minLength",
    "max_len": "maxLength",
    "pattern": "pattern",
    "gte": "minimum",
    "gt": "exclusiveMinimum",
    "lte": "maximum",
    "lt": "exclusiveMaximum",
}
_COLLECTION_KEYWORDS = {
    "min_items": "minItems",
    "max_items": "maxItems",
    "unique": "uniqueItems",
    "min_pairs": "minProperties",
    "max_pairs": "maxProperties",
}
_FORMATS = {"email": "email", "hostname": "hostname", "uri": "uri", "uri_ref": "uri-reference", "uuid": "uuid"}
# Numeric bounds apply to JSON numbers only: 64-bit integers are strings.
_NUMERIC_RULES = {"int32", "sint32", "sfixed32", "uint32", "fixed32", "float", "double", "bool"}


def _clean(comment: str) -> str:
    return textwrap.dedent(comment).strip()


def _file_comments(file: descriptor_pb2.FileDescriptorProto, found: dict[str, str]) -> None:
    """Leading comments by full name (fields and enum values as ``<parent>.<name>``), found
    through source_code_info paths: 4 messages, 5 enums, 6 services; in a message 2 fields,
    3 nested messages, 4 enums; 2 is an enum's values and a service's methods."""
    by_path = {tuple(loc.path): _clean(loc.leading_comments) for loc in file.source_code_info.location}

    def add(path: tuple[int, ...], name: str) -> None:
        if by_path.get(path):
            found[name] = by_path[path]

    def enums(protos: Iterable[descriptor_pb2.EnumDescriptorProto], path: tuple[int, ...], scope: str) -> None:
        for i, enum in enumerate(protos):
            add((*path, i), scope + enum.name)
            for j, value in enumerate(enum.value):
                add((*path, i, 2, j), f"{scope}{enum.name}.{value.name}")

    def messages(protos: Iterable[descriptor_pb2.DescriptorProto], path: tuple[int, ...], scope: str) -> None:
        for i, message in enumerate(protos):
            name = scope + message.name
            add((*path, i), name)
            for j, field in enumerate(message.field):
                add((*path, i, 2, j), f"{name}.{field.name}")
            messages(message.nested_type, (*path, i, 3), name + ".")
            enums(message.enum_type, (*path, i, 4), name + ".")

    scope = f"{file.package}." if file.package else ""
    messages(file.message_type, (4,), scope)
    enums(file.enum_type, (5,), scope)
    for i, service in enumerate(file.service):
        add((6, i), scope + service.name)
        for j, method in enumerate(service.method):
            add((6, i, 2, j), f"{scope}{service.name}.{method.name}")


def _resource_patterns(descriptor_set: descriptor_pb2.FileDescriptorSet) -> list[str]:
    """The ``google.api.resource`` name patterns (``rooms/{room}``): they name path segments."""
    patterns: list[str] = []
    for file in descriptor_set.file:
        for definition in file.options.Extensions[resource_pb2.resource_definition]:
            patterns += definition.pattern
        for message in file.message_type:
            if message.options.HasExtension(resource_pb2.resource):
                patterns += message.options.Extensions[resource_pb2.resource].pattern
    return patterns


def _singular(collection: str) -> str:
    if collection.endswith("ies"):
        return collection[:-3] + "y"
    return collection.removesuffix("s")


def _segment_names(segments: list[str], patterns: list[str]) -> list[str | None]:
    """Names of a variable's wildcard segments (None for literals): from the resource pattern
    of the same shape (``rooms/*`` is ``rooms/{room}``), else the collection's singular."""
    for pattern in patterns:
        parts = pattern.split("/")
        if len(parts) == len(segments) and all(
            s == p or (s in ("*", "**") and p.startswith("{")) for s, p in zip(segments, parts, strict=True)
        ):
            return [p.strip("{}") if s in ("*", "**") else None for s, p in zip(segments, parts, strict=True)]
    return [
        None if s not in ("*", "**") else _singular(segments[i - 1]) if i and "*" not in segments[i - 1] else "id"
        for i, s in enumerate(segments)
    ]


def _field_at(message: descriptor.Descriptor, field_path: str) -> FD:
    *parents, last = field_path.split(".")
    for name in parents:
        nested = message.fields_by_name[name].message_type
        assert nested is not None, f"{field_path} crosses a scalar"
        message = nested
    return message.fields_by_name[last]


def _rules(field: FD) -> validate_pb2.FieldRules:
    rules: validate_pb2.FieldRules = field.GetOptions().Extensions[validate_pb2.field]
    return rules


def _behaviors(field: FD) -> set[int]:
    return set(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def _is_required(field: FD) -> bool:
    # buf's `required` means "set": a JSON key only for fields with presence (messages, optional).
    return field_behavior_pb2.REQUIRED in _behaviors(field) or (_rules(field).required and field.has_presence)


def _camel(path: str) -> str:
    return re.sub(r"_([a-z0-9])", lambda m: m.group(1).upper(), path)


def _type_keywords(rules: validate_pb2.FieldRules, field: FD) -> Schema:
    """JSON Schema keywords of a scalar or enum field's buf.validate rules."""
    kind = rules.WhichOneof("type")
    keywords: Schema = {}
    if kind == "enum" and field.enum_type is not None:
        # The enum's schema lists only defined names already (defined_only).
        names = {v.number: v.name for v in field.enum_type.values}
        listed = [rules.enum.const] if rules.enum.HasField("const") else list(getattr(rules.enum, "in") or names)
        allowed = [n for n in listed if n not in rules.enum.not_in and n in names]
        if len(allowed) < len(names):
            keywords["enum"] = [names[n] for n in allowed]
    elif kind == "string" or kind in _NUMERIC_RULES:
        for rule, value in getattr(rules, kind).ListFields():
            if rule.name in _KEYWORDS:
                keywords[_KEYWORDS[rule.name]] = value
            elif rule.name == "len":
                keywords["minLength"] = keywords["maxLength"] = value
            elif rule.name == "in":
                keywords["enum"] = list(value)
            elif rule.name == "not_in":
                keywords["not"] = {"enum": list(value)}
            elif rule.name in _FORMATS and value is True:
                keywords["format"] = _FORMATS[rule.name]
    elif kind == "field_mask" and getattr(rules.field_mask, "in"):
        # The JSON form of a mask is "a,b.c" in lowerCamelCase; listed paths or their sub-paths.
        paths = "|".join(re.escape(_camel(p)) for p in getattr(rules.field_mask, "in"))
        path = rf"(?:{paths})(?:\.[A-Za-z0-9]+)*"
        keywords["pattern"] = rf"^{path}(?:,{path})*$"
    return keywords


class _Schemas:
    """Builds schemas, collecting a component for every message and enum they reach."""

    def __init__(self, comments: dict[str, str]) -> None:
        self.comments = comments
        self.components: dict[str, Schema] = {}
        self._names: dict[str, str] = {}  # full name -> component name

    def ref(self, desc: descriptor.Descriptor | descriptor.EnumDescriptor) -> Schema:
        name = self._names.get(desc.full_name)
        if name is None:
            # Short names read best; a second type of the same short name keeps its full name.
            name = desc.name if desc.name not in self.components else desc.full_name
            self._names[desc.full_name] = name
            self.components[name] = {}  # taken before building: messages may be recursive
            if isinstance(desc, descriptor.EnumDescriptor):
                self.components[name] = self._enum(desc)
            else:
                self.components[name] = self.message(desc)
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum(self, desc: descriptor.EnumDescriptor) -> Schema:
        lines = [self.comments.get(desc.full_name, ""), ""]  # a blank line, then the values as a list
        for value in desc.values:
            comment = self.comments.get(f"{desc.full_name}.{value.name}", "").replace("\n", " ")
            lines.append(f"- `{value.name}`: {comment}" if comment else f"- `{value.name}`")
        return {"type": "string", "enum": [v.name for v in desc.values], "description": "\n".join(lines).strip()}

    def message(self, desc: descriptor.Descriptor, exclude: Iterable[str] = ()) -> Schema:
        """An object schema; ``exclude``: fields left out (bound by the path)."""
        if desc.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[desc.full_name])
        properties: dict[str, Schema] = {}
        required = []
        for field in desc.fields:
            if field.name not in exclude:
                properties[field.json_name] = self.field(field)
                if _is_required(field):
                    required.append(field.json_name)
        # No additionalProperties: false: requests may also use proto names (display_name).
        schema: Schema = {"type": "object", "properties": properties}
        if required:
            schema["required"] = required
        description = self.comments.get(desc.full_name, "")
        for oneof in desc.oneofs:
            names = [f"`{f.json_name}`" for f in oneof.fields if f.name not in exclude]
            if len(names) > 1:  # not the synthetic oneof of a proto3 `optional`
                description += f"\n\nAt most one of {', '.join(names)} is set."
        if description.strip():
            schema["description"] = description.strip()
        return schema

    def value(self, field: FD, rules: validate_pb2.FieldRules) -> Schema:
        """The schema of one value of the field (an item, for a repeated field)."""
        if field.message_type is not None:
            name = field.message_type.full_name
            schema = dict(_WELL_KNOWN[name]) if name in _WELL_KNOWN else self.ref(field.message_type)
        elif field.enum_type is not None:
            schema = self.ref(field.enum_type)
        else:
            schema = dict(_SCALARS[field.type])
        keywords = _type_keywords(rules, field)
        if keywords and rules.ignore == validate_pb2.IGNORE_IF_ZERO_VALUE:
            # The rules skip the zero value ("" for a slug left to the server).
            zero = field.enum_type.values_by_number[0].name if field.enum_type else _ZERO.get(schema.get("type", ""))
            # The branch repeats the type, so that code generators (openapi-typescript) do not
            # read a branch of bare keywords as "any value".
            typed = {"type": schema["type"]} if "type" in schema else {}
            schema["anyOf"] = [{"const": zero}, typed | keywords]
        else:
            schema.update(keywords)
        return schema

    def field(self, field: FD) -> Schema:
        """The schema of a field, with its comment, behaviors and repeated/map rules."""
        rules = _rules(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            value = field.message_type.fields_by_name["value"]
            schema: Schema = {"type": "object", "additionalProperties": self.value(value, rules.map.values)}
            schema |= {_COLLECTION_KEYWORDS[r.name]: v for r, v in rules.map.ListFields() if r.name.endswith("_pairs")}
        elif field.is_repeated:
            schema = {"type": "array", "items": self.value(field, rules.repeated.items)}
            schema |= {_COLLECTION_KEYWORDS[r.name]: v for r, v in rules.repeated.ListFields() if r.name != "items"}
        else:
            schema = self.value(field, rules)
        comment = self.comments.get(field.full_name)
        if comment:
            schema["description"] = comment
        behaviors = _behaviors(field)
        if field_behavior_pb2.OUTPUT_ONLY in behaviors:
            schema["readOnly"] = True
        if field_behavior_pb2.INPUT_ONLY in behaviors:
            schema["writeOnly"] = True
        return schema

    def path(self, route: Route, patterns: list[str]) -> tuple[str, list[Schema]]:
        """The OpenAPI path of a route and its path parameters, one per wildcard segment."""
        path, parameters, position = "", [], 0
        request = route.method.input_type
        for match in _VARIABLE.finditer(route.template):
            path += route.template[position : match.start()]
            position = match.end()
            field_path, pattern = match.group(1), match.group(2) or "*"
            field = _field_at(request, field_path)
            comment = self.comments.get(field.full_name, "")
            segments = pattern.split("/")
            if len(segments) == 1:  # the whole field in one segment, like `{room_id}`
                schema = self.value(field, _rules(field))
                schema["allOf"] = [_ANY_SEGMENTS if pattern == "**" else _SEGMENT]
                parameters.append(_parameter(field_path, "path", schema, comment, required=True))
                path += f"{{{field_path}}}"
                continue
            names = _segment_names(segments, patterns)
            shape = "/".join(s if n is None else f"{{{n}}}" for s, n in zip(segments, names, strict=True))
            for segment, name in zip(segments, names, strict=True):
                if name is not None:
                    schema = dict(_ANY_SEGMENTS if segment == "**" else _SEGMENT)
                    text = f"`{field_path}` is `{shape}`. {comment}".strip()
                    parameters.append(_parameter(name, "path", schema, text, required=True))
            path += shape
        return path + route.template[position:], parameters

    def query(
        self,
        route: Route,
        message: descriptor.Descriptor,
        prefix: str = "",
        names: str = "",
        seen: tuple[str, ...] = (),
    ) -> list[Schema]:
        """Query parameters: the fields bound by neither path nor body, nested ones as ``a.b``."""
        if route.body == "*":
            return []
        bound = {*route.path_fields, route.body}
        seen = (*seen, message.full_name)
        parameters = []
        for field in message.fields:
            path, name = prefix + field.name, names + field.json_name
            nested = field.message_type
            if path in bound or (field.is_repeated and nested is not None):
                continue  # repeated messages and maps cannot be written as query parameters
            if nested is not None and nested.full_name not in _WELL_KNOWN:
                if nested.full_name not in seen:  # recursive messages: stop at the first repeat
                    parameters += self.query(route, nested, path + ".", name + ".", seen)
                continue
            schema = self.field(field)
            text = schema.pop("description", "")
            # The gateway fills a PATCH's omitted update_mask from the body's fields.
            autofilled = route.http_method == "PATCH" and route.body and field.name == "update_mask" and not prefix
            if autofilled:
                text += "\n\nWhen left out: the fields present in the body."
            required = not prefix and not autofilled and _is_required(field)
            parameters.append(_parameter(name, "query", schema, text, required=required))
        return parameters

    def request_body(self, route: Route) -> Schema | None:
        request = route.method.input_type
        if not route.body:
            return None
        if route.body == "*":
            bound = {p for p in route.path_fields if "." not in p}
            schema = self.message(request, exclude=bound) if bound else self.ref(request)
            required = any(_is_required(f) for f in request.fields if f.name not in bound)
            description = ""
        else:
            field = request.fields_by_name[route.body]
            schema = self.field(field)
            required = _is_required(field)
            description = schema.pop("description", "")
        body: Schema = {"required": required, "content": {"application/json": {"schema": schema}}}
        if description:
            body["description"] = description
        return body

    def operation(self, route: Route, patterns: list[str], operation_id: str) -> tuple[str, Schema]:
        method, service = route.method, route.method.containing_service
        path, parameters = self.path(route, patterns)
        parameters += self.query(route, method.input_type)
        output = method.output_type
        if route.raw_response:  # google.api.HttpBody: the gateway answers its bytes, not JSON
            raw = {"type": "string", "format": "binary"}
            text = "A file (text or binary): the bytes the service answers, its media type in `Content-Type`."
            ok = {"description": text, "content": {"*/*": {"schema": raw}}}
        elif route.streaming:
            result = self.message(output) if output.full_name in _WELL_KNOWN else self.ref(output)
            line = {
                "type": "object",
                "description": "One JSON object a line: a message, or the error that ended the stream.",
                "properties": {"result": result, "error": {"$ref": "#/components/schemas/Status"}},
                "oneOf": [{"required": ["result"]}, {"required": ["error"]}],
            }
            ok = {"description": f"A stream of `{output.name}`.", "content": {"application/x-ndjson": {"schema": line}}}
        else:
            result = self.message(output) if output.full_name in _WELL_KNOWN else self.ref(output)
            ok = {"description": f"`{output.name}`.", "content": {"application/json": {"schema": result}}}
        comment = self.comments.get(method.full_name, "")
        summary = re.match(r"(.+?\.)(\s|$)", comment.replace("\n", " "))
        operation: Schema = {
            "operationId": operation_id,
            "tags": [service.name],
            "summary": summary.group(1) if summary else method.name,
            "description": comment,
            "parameters": parameters,
        }
        body = self.request_body(route)
        if body is not None:
            operation["requestBody"] = body
        operation["responses"] = {"200": ok, "default": {"$ref": "#/components/responses/Error"}}
        # Anonymous calls are allowed where the server says so; cookie writes need the CSRF header.
        session: dict[str, list[str]] = (
            {"cookie": []} if route.http_method in ("GET", "HEAD") else {"cookie": [], "csrf": []}
        )
        operation["security"] = [{"bearer": []}, session, {}]
        return path, operation


def _parameter(name: str, where: str, schema: Schema, description: str, *, required: bool) -> Schema:
    parameter: Schema = {"name": name, "in": where, "required": required, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def openapi_document(descriptor_set: descriptor_pb2.FileDescriptorSet, routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``, with the contracts' comments from ``descriptor_set``."""
    comments: dict[str, str] = {}
    for file in descriptor_set.file:
        _file_comments(file, comments)
    schemas = _Schemas(comments)
    schemas.ref(status_pb2.Status.DESCRIPTOR)  # first, so that it is named `Status`
    patterns = _resource_patterns(descriptor_set)
    paths: dict[str, dict[str, Schema]] = {}
    tags: dict[str, str] = {}
    bindings: dict[str, int] = {}
    # Services by name, their RPCs in contract order (routes come most specific first).
    for route in sorted(routes, key=lambda r: (r.method.containing_service.full_name, r.method.index)):
        service = route.method.containing_service
        tags.setdefault(service.name, comments.get(service.full_name, ""))
        operation_id = f"{service.name}_{route.method.name}"
        bindings[operation_id] = bindings.get(operation_id, 0) + 1
        if bindings[operation_id] > 1:  # an additional binding
            operation_id += f"_{bindings[operation_id]}"
        path, operation = schemas.operation(route, patterns, operation_id)
        operations = paths.setdefault(path, {})
        if route.http_method.lower() in operations:
            raise ValueError(f"{route.http_method} {path} is bound twice (second: {route.method.full_name})")
        operations[route.http_method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Parley API",
            "version": metadata.version("parley"),
            "description": (
                "The REST form of Parley's gRPC API: JSON in the proto3 JSON mapping (lowerCamelCase "
                "names, enums as names, int64 as strings, timestamps in RFC 3339). Errors answer a "
                "`google.rpc.Status` with the HTTP status of its gRPC code. Server-streaming calls "
                "answer newline-delimited JSON. Calls that return a file (`google.api.HttpBody` in the "
                "contracts) answer its bytes with its media type."
            ),
        },
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {
            "schemas": schemas.components,
            "responses": {
                "Error": {
                    "description": (
                        "The call failed: `code` is the gRPC status code (google.rpc.Code), "
                        "`details` typed details such as `google.rpc.BadRequest`."
                    ),
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}},
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An OIDC access token, a dev-login token, or an API key `pk_<id>.<secret>`.",
                },
                "cookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": _app.SESSION_COOKIE,
                    "description": "The web app's session, after logging in at `/auth/login`.",
                },
                "csrf": {
                    "type": "apiKey",
                    "in": "header",
                    "name": _app.CSRF_HEADER,
                    "description": f"With the session cookie, writes echo the `{_app.CSRF_COOKIE}` cookie here.",
                },
            },
        },
    }


def build_openapi_document() -> dict[str, Any]:
    """The document ``/api/openapi.json`` serves, built from the generated descriptors without a
    server (``scripts/gen_typescript.py`` turns it into the TypeScript SDK's REST types)."""
    descriptor_set = _app.load_descriptor_set()
    return openapi_document(descriptor_set, routes_for(_app.parley_services(descriptor_set)))


def _swagger_ui_dir() -> Path:
    # swagger-ui-bundle (Swagger UI 4, no OpenAPI 3.1) and its fork swagger-ui-bundle-v2 (5.x)
    # install the same module: take the newest assets present.
    vendor = Path(str(resources.files("swagger_ui_bundle"))) / "vendor"
    found = vendor.glob("swagger-ui-*")
    return max(found, key=lambda p: tuple(int(n) for n in re.findall(r"\d+", p.name)))


_PAGE = string.Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Parley API</title>
<link rel="stylesheet" href="$docs/assets/swagger-ui.css">
<link rel="icon" href="$docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui"></div>
<script src="$docs/assets/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({
  url: "$document",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // A logged-in browser calls with its session cookie, and its writes must echo the CSRF cookie.
  requestInterceptor: (request) => {
    const csrf = document.cookie.match(/(?:^|;\\s*)$csrf_cookie=([^;]*)/);
    if (csrf) request.headers["$csrf_header"] = decodeURIComponent(csrf[1]);
    return request;
  },
});
</script>
</body>
</html>
""")


def docs_routes(gateway: _app.Gateway) -> list[BaseRoute]:
    """``/api/openapi.json`` (built once, here) and the Swagger UI page ``/api/docs``."""
    document = json.dumps(openapi_document(_app.load_descriptor_set(), gateway.router.routes)).encode()
    page = _PAGE.substitute(
        docs=DOCS_PATH, document=OPENAPI_PATH, csrf_cookie=_app.CSRF_COOKIE, csrf_header=_app.CSRF_HEADER
    )

    async def openapi_json(_request: Request) -> Response:
        return Response(document, media_type="application/json")

    async def docs(_request: Request) -> Response:
        return HTMLResponse(page)

    return [
        HttpRoute(OPENAPI_PATH, openapi_json),
        HttpRoute(DOCS_PATH, docs),
        Mount(f"{DOCS_PATH}/assets", StaticFiles(directory=_swagger_ui_dir())),
    ]
