"""The OpenAPI document: generated from the contracts alone, valid OpenAPI 3.1, every route an
operation, field behaviors and validation rules as JSON Schema; served with its docs page."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from gateway import GatewayServer, GatewaySettings, Router, load_descriptor_set, routes_for
from gateway._app import parley_services
from gateway._openapi import OPENAPI_PATH, docs_routes, openapi_document
from gateway._routes import Route

Document = dict[str, Any]


@pytest.fixture(scope="module")
def routes() -> list[Route]:
    return routes_for(parley_services(load_descriptor_set()))


@pytest.fixture(scope="module")
def document(routes: list[Route]) -> Document:
    return openapi_document(load_descriptor_set(), routes)


def _operations(document: Document) -> dict[str, tuple[str, str, Document]]:
    """operationId -> (HTTP method, path, operation)."""
    return {
        op["operationId"]: (method.upper(), path, op)
        for path, ops in document["paths"].items()
        for method, op in ops.items()
    }


def _schema(document: Document, name: str) -> Document:
    schema: Document = document["components"]["schemas"][name]
    return schema


def test_document_is_valid_openapi_3_1(document: Document) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["info"]["title"] == "Parley API" and document["info"]["version"]
    validate(document, cls=OpenAPIV31SpecValidator)


def test_every_route_is_an_operation_at_a_path_the_gateway_routes(document: Document, routes: list[Route]) -> None:
    operations = _operations(document)
    assert len(operations) == len(routes)
    router = Router(routes)
    for route in routes:
        service = route.method.containing_service.name
        method, path, operation = operations[f"{service}_{route.method.name}"]
        assert method == route.http_method and operation["tags"] == [service]
        # Filling the path parameters in gives a URL that the gateway sends to this very RPC.
        url = re.sub(r"\{[^}]+\}", "x1", path)
        match = router.match(method, url)
        assert match is not None and match.route.method.full_name == route.method.full_name, (path, url)
        assert {p["name"] for p in operation["parameters"] if p["in"] == "path"} == set(
            re.findall(r"\{([^}]+)\}", path)
        )


def test_resource_names_are_expanded_into_path_segments(document: Document) -> None:
    operations = _operations(document)
    # `/v1/{name=rooms/*}` and `/v1/{name=users/*}` would both be `/v1/{name}`.
    assert operations["RoomService_GetRoom"][:2] == ("GET", "/v1/rooms/{room}")
    assert operations["UserService_GetUser"][:2] == ("GET", "/v1/users/{user}")
    _, path, watch = operations["LobbyService_WatchLobbyEntry"]
    assert path == "/v1/rooms/{room}/lobbyEntries/{lobby_entry}:watch"
    room = next(p for p in watch["parameters"] if p["name"] == "room")
    assert room["required"] and re.fullmatch(room["schema"]["pattern"], "abc-defg-hij")
    assert not re.fullmatch(room["schema"]["pattern"], "a/b") and not re.fullmatch(room["schema"]["pattern"], "..")
    assert "rooms/{room}/lobbyEntries/{lobby_entry}" in room["description"]


def test_query_parameters_and_bodies(document: Document) -> None:
    operations = _operations(document)
    list_rooms = operations["RoomService_ListRooms"][2]
    page_size = next(p for p in list_rooms["parameters"] if p["name"] == "pageSize")
    assert page_size["in"] == "query" and page_size["schema"]["minimum"] == 0 and page_size["schema"]["maximum"] == 1000
    assert "requestBody" not in list_rooms
    # body "room": the Room is the body, the mask a query parameter the gateway fills when left out.
    update = operations["RoomService_UpdateRoom"][2]
    assert update["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Room"}
    mask = next(p for p in update["parameters"] if p["in"] == "query")
    assert mask["name"] == "updateMask" and not mask["required"]
    assert re.fullmatch(mask["schema"]["pattern"], "displayName,configuration.publishSources")
    assert not re.fullmatch(mask["schema"]["pattern"], "etag") and not re.fullmatch(
        mask["schema"]["pattern"], "display_name"
    )
    # body "*": the request less its path fields, and no query parameters.
    token = operations["RoomService_CreateJoinToken"][2]
    body = token["requestBody"]["content"]["application/json"]["schema"]
    assert "room" not in body["properties"] and {"identity", "ttl", "grants"} <= set(body["properties"])
    assert body["required"] == ["identity", "grants"] and token["requestBody"]["required"]
    assert body["properties"]["ttl"]["type"] == "string"
    assert [p["in"] for p in token["parameters"]] == ["path"]


def test_field_behaviors(document: Document) -> None:
    room = _schema(document, "Room")["properties"]
    assert room["createTime"]["readOnly"] and room["etag"]["readOnly"] and "readOnly" not in room["displayName"]
    assert room["createTime"]["format"] == "date-time"
    assert _schema(document, "DevLoginRequest")["required"] == ["subject"]
    assert "required" not in _schema(document, "Room")


def test_comments_become_descriptions(document: Document) -> None:
    assert _schema(document, "Room")["description"].startswith("A meeting room.")
    assert _schema(document, "Room")["properties"]["slug"]["description"].startswith("The human-friendly identifier")
    assert "- `ACCESS_LEVEL_PUBLIC`: Anyone with the link enters" in _schema(document, "AccessLevel")["description"]
    join = _operations(document)["RoomService_JoinRoom"][2]
    assert join["summary"] == "Asks to join a room's meeting."
    assert join["description"].startswith("Asks to join a room's meeting. Returns a join token")
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert tags["RoomService"] == "Rooms, and joining them."
    assert "At most one of `grant`, `lobby` is set." in _schema(document, "JoinRoomResponse")["description"]


def test_validation_rules(document: Document) -> None:
    room = _schema(document, "Room")["properties"]
    # IGNORE_IF_ZERO_VALUE: "" (the server picks the slug) or a valid slug.
    assert room["slug"]["anyOf"] == [
        {"const": ""},
        {"type": "string", "minLength": 3, "maxLength": 63, "pattern": "^[a-z0-9]+(-[a-z0-9]+)*$"},
    ]
    assert room["displayName"]["maxLength"] == 200
    sources = _schema(document, "RoomConfiguration")["properties"]["publishSources"]
    assert sources["maxItems"] == 4 and sources["uniqueItems"]
    assert "TRACK_SOURCE_UNSPECIFIED" not in sources["items"]["enum"] and len(sources["items"]["enum"]) == 4
    assert "TRACK_SOURCE_UNSPECIFIED" in _schema(document, "TrackSource")["enum"]
    assert "keys:manage" in _schema(document, "ApiKey")["properties"]["scopes"]["items"]["enum"]
    assert _schema(document, "DevLoginRequest")["properties"]["email"]["anyOf"] == [
        {"const": ""},
        {"type": "string", "maxLength": 320, "format": "email"},
    ]


def test_errors_streams_and_security(document: Document) -> None:
    status = _schema(document, "Status")["properties"]
    assert status["code"]["type"] == "integer" and status["message"]["type"] == "string"
    assert status["details"]["items"]["required"] == ["@type"]
    error = document["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/Status"}
    operations = _operations(document)
    assert all(op["responses"]["default"] == {"$ref": "#/components/responses/Error"} for *_, op in operations.values())
    watch = operations["LobbyService_WatchLobbyEntry"][2]["responses"]["200"]["content"]
    line = watch["application/x-ndjson"]["schema"]
    assert line["properties"]["result"] == {"$ref": "#/components/schemas/LobbyEntry"}
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"]["scheme"] == "bearer"
    assert (schemes["cookie"]["in"], schemes["cookie"]["name"]) == ("cookie", "parley_session")
    assert operations["RoomService_GetRoom"][2]["security"] == [{"bearer": []}, {"cookie": []}, {}]
    assert operations["RoomService_JoinRoom"][2]["security"] == [{"bearer": []}, {"cookie": [], "csrf": []}, {}]


def test_files_and_grpc_only_methods(document: Document, routes: list[Route]) -> None:
    operations = _operations(document)
    # A google.api.HttpBody response is the file itself, of the media type the service answers.
    method, path, export = operations["TranscriptionService_ExportTranscription"]
    assert (method, path) == ("GET", "/v1/transcriptions/{transcription}:export")
    assert export["responses"]["200"]["content"] == {"*/*": {"schema": {"type": "string", "format": "binary"}}}
    assert "HttpBody" not in document["components"]["schemas"]
    # Client streaming (UploadMedia, no http annotation) stays gRPC-only.
    assert "TranscriptionService_UploadMedia" not in operations
    # So do the metadata agent's start and stop (only control sends agents, with join tokens);
    # reading one is REST too.
    assert operations["MetadataAgentService_GetMetadataAgent"][:2] == ("GET", "/v1/metadataAgents/{metadata_agent}")
    assert not {"MetadataAgentService_StartMetadataAgent", "MetadataAgentService_StopMetadataAgent"} & set(operations)
    assert "joinToken" not in str(_schema(document, "MetadataAgent"))
    assert not any(route.method.client_streaming for route in routes)


async def test_served_with_a_docs_page(document: Document) -> None:
    settings = GatewaySettings(
        control_target="127.0.0.1:1", session_secret="x" * 40, dev_login=True, secure_cookies=False
    )
    async with (
        GatewayServer(settings, extra_routes=[docs_routes]) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        served = await http.get(OPENAPI_PATH)
        assert served.status_code == 200 and served.json() == document
        page = await http.get("/api/docs")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert f'url: "{OPENAPI_PATH}"' in page.text
        bundle = await http.get("/api/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200
        # Swagger UI 4 cannot show OpenAPI 3.1; the page must use Swagger UI 5.
        assert re.search(r'PACKAGE_VERSION:"5\.', bundle.text), "the bundle is not Swagger UI 5"
        # A slash a client escaped as %2F reaches the route (uvicorn decodes the path): the
        # call goes on to control, which is unreachable here (503), not to a 404.
        escaped = await http.get("/v1/rooms%2Fabc")
        assert escaped.status_code == 503 and escaped.json()["code"] == 14


def test_recording_and_egress_operations(document: Document) -> None:
    operations = _operations(document)
    assert operations["RecordingService_ListRecordings"][:2] == ("GET", "/v1/rooms/{room}/recordings")
    assert operations["EgressService_WatchEgress"][:2] == ("GET", "/v1/egresses/{egress}:watch")
    assert "EgressReportService_ReportEgress" not in operations  # egress nodes only, over gRPC
    # The storage hook's body is the bucket notification as the storage sends it: any object.
    method, path, notify = operations["RecordingService_NotifyStorageEvent"]
    assert (method, path) == ("POST", "/v1/storage:notify")
    assert notify["requestBody"]["content"]["application/json"]["schema"] == {"type": "object"}
