"""The REST facade: every annotated RPC answers over REST as it does over gRPC, errors map to
HTTP statuses with the Status body, and bad HTTP input is refused clearly."""

from __future__ import annotations

import json
import re
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, message, message_factory

from control import SERVICE_NAMES
from gateway import GatewayServer, routes_for
from gateway._routes import Route
from parley import Client
from parley.control.v1 import resources_pb2 as res

from .conftest import Callers
from .test_permissions import MATRIX, Scene, _scene

ROUTES = {f"{r.method.containing_service.name}.{r.method.name}": r for r in routes_for(SERVICE_NAMES)}
# Values that differ between two equal scenes (fresh ids, clocks, secrets).
_VOLATILE = re.compile(r"[0-9a-f]{32}|pk_[0-9a-f]+|[a-z]{3}-[a-z]{4}-[a-z]{3}|\d{4}-\d\d-\d\dT[\d:.]+Z")
_SECRET_KEYS = {"token", "accessToken", "secret", "ticket", "identity", "createTime", "updateTime", "expireTime"}
# A webhook's delivery attempts go on in the background, between the gRPC and the REST call:
# these fields may change, appear or disappear meanwhile.
_BACKGROUND_KEYS = {
    "attempts",
    "lastLatency",
    "lastError",
    "lastStatusCode",
    "nextAttemptTime",
    "consecutiveFailures",
    "pausedUntil",
}


#: RPCs that deliberately have no REST route (their contracts say why).
GRPC_ONLY = {"SfuReportService.ReportEvents", "EgressReportService.ReportEgress"}


def test_every_rpc_has_a_rest_route() -> None:
    assert sorted(ROUTES) == sorted(set(MATRIX) - GRPC_ONLY)


def _rest_request(route: Route, request: message.Message) -> tuple[str, dict[str, Any] | None, httpx.QueryParams]:
    """The HTTP request a REST client would send for ``request`` (the transcoder's inverse)."""
    as_json = json_format.MessageToDict(request, preserving_proto_field_name=True)

    def lookup(path: str) -> str:
        value: Any = as_json
        for part in path.split("."):
            value = value.pop(part) if isinstance(value, dict) and part == path.split(".")[-1] else value[part]
        return str(value)

    url = re.sub(r"\{([a-z_.]+)(?:=[^}]*)?\}", lambda m: lookup(m.group(1)), route.template)
    body: dict[str, Any] | None = None
    if route.body == "*":
        body, as_json = as_json, {}
    elif route.body:
        body = as_json.pop(route.body, {})
    query: list[tuple[str, str | int | float | bool | None]] = []

    def flatten(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                flatten(f"{prefix}.{key}" if prefix else key, inner)
        elif isinstance(value, list):
            query.extend((prefix, str(v)) for v in value)
        else:
            query.append((prefix, json.dumps(value) if isinstance(value, bool) else str(value)))

    flatten("", {k: v for k, v in as_json.items() if v not in ({}, [])})
    if route.body == "*" and body is not None:
        for field in route.path_fields:
            body.pop(field.split(".")[0], None)
    return url, body, httpx.QueryParams(query)


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: "<volatile>" if k in _SECRET_KEYS else _normalise(v)
            for k, v in value.items()
            if k not in _BACKGROUND_KEYS
        }
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return _VOLATILE.sub("<id>", value) if isinstance(value, str) else value


async def _grpc(client: Client, route: Route, request: message.Message) -> tuple[int, Any]:
    channel = client.channel
    try:
        if route.streaming:
            call = channel.unary_stream(
                route.grpc_path,
                request_serializer=route.request_type.SerializeToString,
                response_deserializer=route.response_type.FromString,
            )
            stream = call(request, metadata=client._metadata)
            first = await stream.__aiter__().__anext__()
            stream.cancel()
            return 200, json_format.MessageToDict(first)
        unary = channel.unary_unary(
            route.grpc_path,
            request_serializer=route.request_type.SerializeToString,
            response_deserializer=route.response_type.FromString,
        )
        return 200, json_format.MessageToDict(await unary(request, metadata=client._metadata))
    except grpc.aio.AioRpcError as error:
        return error.code().value[0], error.details()


async def _rest(http: httpx.AsyncClient, client: Client, route: Route, request: message.Message) -> tuple[int, Any]:
    url, body, query = _rest_request(route, request)
    headers = dict(client._metadata)
    if route.streaming:
        async with http.stream(route.http_method, url, params=query, headers=headers) as response:
            line = await response.aiter_lines().__anext__()
            return 200, json.loads(line)["result"]
    response = await http.request(route.http_method, url, params=query, json=body, headers=headers)
    payload = response.json()
    if response.status_code != 200:
        return payload["code"], payload["message"]
    return 200, payload


async def _caller(callers: Callers, rpc: str, people: dict[str, tuple[Client, str]]) -> Client:
    if rpc.startswith(("ApiKeyService", "WebhookService")):
        return callers.admin_key
    if rpc == "RoomService.CreateJoinToken":
        return await callers.key("tokens:create")
    if rpc == "RecordingService.NotifyStorageEvent":  # the storage's own key, as its bearer
        return await callers.key("storage:notify")
    return people["owner"][0]


@pytest.mark.parametrize("rpc", sorted(ROUTES))
async def test_rest_and_grpc_give_the_same_results(
    callers: Callers, gateway: GatewayServer, people: dict[str, tuple[Client, str]], rpc: str
) -> None:
    route, rule = ROUTES[rpc], MATRIX[rpc]
    client = await _caller(callers, rpc, people)
    results = []
    # Reads (GET) run on one scene; writes each on a fresh, equal scene.
    scene: Scene = await _scene(callers, people)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        for transport in ("grpc", "rest"):
            if transport == "rest" and route.http_method != "GET":
                scene = await _scene(callers, people)
            request = route.request_type(**rule.request(scene))
            if transport == "grpc":
                results.append(await _grpc(client, route, request))
            else:
                results.append(await _rest(http, client, route, request))
    async for webhook in callers.admin_key.webhooks.list():  # the scenes' webhooks
        await callers.admin_key.webhooks.delete(webhook.name)
    (grpc_code, grpc_body), (rest_code, rest_body) = results
    assert grpc_code == rest_code == 200, results
    assert _normalise(rest_body) == _normalise(grpc_body)


async def test_reads_are_identical(callers: Callers, gateway: GatewayServer) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(display_name="same")
    async with httpx.AsyncClient(base_url=gateway.url, headers=dict(owner._metadata)) as http:
        assert (await http.get(f"/v1/{room.name}")).json() == json_format.MessageToDict(room)
        listed = (await http.get("/v1/rooms", params={"pageSize": 10})).json()
        assert listed["rooms"] == [json_format.MessageToDict(r) async for r in owner.rooms.list()]


@pytest.fixture(scope="session")
async def people(callers: Callers) -> dict[str, tuple[Client, str]]:
    return {
        role: await callers.user(f"matrix-{role}")
        for role in ("stranger", "member", "administrator", "owner", "target", "newcomer")
    }


async def _rest_error(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = await http.request(method, url, **kwargs)
    return response.status_code, response.json()


async def test_grpc_codes_map_to_http_statuses_with_status_bodies(callers: Callers, gateway: GatewayServer) -> None:
    owner, _ = await callers.user()
    stranger, _ = await callers.user()
    room = await owner.rooms.create(slug=f"http-errors-{gateway.port}")
    owner_headers, stranger_headers = dict(owner._metadata), dict(stranger._metadata)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        cases = [
            (404, 5, "GET", "/v1/rooms/no-such-room", {}),
            (401, 16, "GET", "/v1/users/me", {}),
            (403, 7, "DELETE", f"/v1/{room.name}", {"headers": stranger_headers}),
            (400, 3, "POST", "/v1/rooms", {"json": {"slug": "NOT OK"}, "headers": owner_headers}),
            (409, 6, "POST", "/v1/rooms", {"json": {"slug": room.slug}, "headers": owner_headers}),
            (400, 9, "DELETE", f"/v1/{room.name}", {"params": {"etag": 'W/"0"'}, "headers": owner_headers}),
        ]
        for status, code, method, url, kwargs in cases:
            got_status, body = await _rest_error(http, method, url, **kwargs)
            assert (got_status, body["code"]) == (status, code), (method, url, body)
            assert body["message"]
            assert all("@type" in d for d in body["details"])
        _, body = await _rest_error(http, "POST", "/v1/rooms", json={"slug": "NOT OK"}, headers=owner_headers)
        violations = next(d for d in body["details"] if d["@type"].endswith("BadRequest"))["fieldViolations"]
        assert [v["field"] for v in violations] == ["room.slug"]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "status", "says"),
    [
        ("GET", "/v1/nothing/here", {}, 404, "no API route"),
        ("GET", "/v1/rooms/a%0Ab/accesses", {}, 404, "no API route"),
        ("PUT", "/v1/rooms", {}, 405, "not allowed"),
        ("POST", "/v1/rooms", {"content": b"{not json"}, 400, "not valid JSON"),
        ("POST", "/v1/rooms", {"json": {"displayName": "x", "colour": "red"}}, 400, "colour"),
        ("POST", "/v1/rooms", {"json": ["a list"]}, 400, "JSON object"),
        ("GET", "/v1/rooms", {"params": {"pageSize": "many"}}, 400, "pageSize"),
        ("GET", "/v1/rooms", {"params": {"sort": "name"}}, 400, "unknown query parameter"),
        ("POST", "/v1/rooms", {"content": b"x" * (2 << 20)}, 413, "larger than"),
        ("GET", "/v1/rooms/abc", {"content": b"{}"}, 400, "takes no body"),
        ("GET", "/v1/rooms", {"params": {"pageSize": "99999999999"}}, 400, "pageSize"),
        ("POST", "/v1/rooms", {"content": b"[" * 200_000}, 400, "too deeply"),
    ],
)
async def test_bad_http_input(
    callers: Callers, gateway: GatewayServer, method: str, url: str, kwargs: dict[str, Any], status: int, says: str
) -> None:
    owner, _ = await callers.user()
    async with httpx.AsyncClient(base_url=gateway.url, headers=dict(owner._metadata)) as http:
        got_status, body = await _rest_error(http, method, url, **kwargs)
    assert got_status == status
    assert says in body["message"]


async def test_patch_without_mask_updates_only_the_fields_sent(callers: Callers, gateway: GatewayServer) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(display_name="before")
    async with httpx.AsyncClient(base_url=gateway.url, headers=dict(owner._metadata)) as http:
        response = await http.patch(f"/v1/{room.name}", json={"configuration": {"everyoneCanMute": True}})
    assert response.status_code == 200
    updated = response.json()
    assert updated["displayName"] == "before"
    assert updated["configuration"]["everyoneCanMute"] is True
    assert len(updated["configuration"]["publishSources"]) == 4


async def test_cookie_writes_need_the_csrf_header(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        login = await http.get("/auth/login", params={"subject": "cookie-user", "next": "/v1/users/me"})
        assert login.status_code == 303
        assert login.headers["location"] == "/v1/users/me"
        assert (await http.get("/v1/users/me")).json()["subject"] == "cookie-user"
        refused = await http.post("/v1/rooms", json={"room": {}})
        assert refused.status_code == 403
        csrf = http.cookies["parley_csrf"]
        created = await http.post("/v1/rooms", json={"displayName": "by cookie"}, headers={"x-csrf-token": csrf})
        assert created.status_code == 200
        wrong = await http.post("/v1/rooms", json={"displayName": "x"}, headers={"x-csrf-token": csrf + "x"})
        assert wrong.status_code == 403
        assert (await http.get("/auth/logout")).status_code != 303  # a cross-site link cannot log out
        assert (await http.get("/v1/users/me")).status_code == 200
        assert (await http.post("/auth/logout")).status_code == 303
        assert (await http.get("/v1/users/me")).status_code == 401


async def test_lobby_watch_streams_ndjson(callers: Callers, gateway: GatewayServer) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(access_level=res.ACCESS_LEVEL_RESTRICTED)
    ticket = (await callers.anonymous.rooms.join(room.slug, display_name="Waiting")).lobby
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        url = f"/v1/{ticket.entry.name}:watch"
        async with http.stream("GET", url, params={"ticket": ticket.ticket}) as response:
            lines = response.aiter_lines()
            assert json.loads(await lines.__anext__())["result"]["state"] == "LOBBY_ENTRY_STATE_WAITING"
            await owner.lobby.admit(ticket.entry.name)
            assert json.loads(await lines.__anext__())["result"]["state"] == "LOBBY_ENTRY_STATE_ACCEPTED"
        missing = await http.get(f"/v1/{ticket.entry.name[:-4]}0000:watch")
        assert missing.status_code in (401, 404)


async def test_healthz_and_static_page(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        page = await http.get("/")
        assert page.status_code == 200
        assert "Parley" in page.text


def test_message_factory_is_used_for_every_route() -> None:
    for route in ROUTES.values():
        assert route.request_type is message_factory.GetMessageClass(route.method.input_type)


async def test_kept_alive_responses_are_not_delayed(gateway: GatewayServer) -> None:
    """Accepted connections get TCP_NODELAY (a regression here costs ~40 ms per call)."""
    import socket

    async with httpx.AsyncClient(base_url=gateway.url) as http:
        await http.get("/healthz")  # opens the kept-alive connection
    gateway_socket = gateway._socket
    assert gateway_socket.proto == socket.IPPROTO_TCP


async def test_patch_may_send_the_etag_back(callers: Callers, gateway: GatewayServer) -> None:
    owner, _ = await callers.user()
    room = await owner.rooms.create(display_name="etag")
    async with httpx.AsyncClient(base_url=gateway.url, headers=dict(owner._metadata)) as http:
        whole = (await http.get(f"/v1/{room.name}")).json()
        whole["displayName"] = "edited"  # GET, edit, PATCH the whole resource back
        response = await http.patch(f"/v1/{room.name}", json=whole)
        assert response.status_code == 200, response.json()
        assert response.json()["displayName"] == "edited"
        stale = await http.patch(f"/v1/{room.name}", json=whole)
        assert stale.status_code == 400
        assert stale.json()["details"][0]["reason"] == "ETAG_MISMATCH"
        by_proto_name = await http.patch(
            f"/v1/{room.name}", params={"update_mask": "display_name"}, json={"displayName": "proto names"}
        )
        assert by_proto_name.json()["displayName"] == "proto names"


async def test_non_ascii_csrf_header_is_refused(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        await http.get("/auth/login", params={"subject": "csrf-unicode"})
        headers = [(b"x-csrf-token", "é".encode())]  # raw bytes: httpx refuses non-ASCII str headers
        response = await http.post("/v1/rooms", json={}, headers=headers)
    assert response.status_code == 403


async def test_an_expired_session_is_logged_out(gateway: GatewayServer) -> None:
    from starlette.requests import Request

    from gateway._app import session_token

    scope = {"type": "http", "session": {"token": "t", "csrf": "c", "exp": 1}}
    request = Request(scope)
    assert session_token(request) == ""
    assert request.session == {}
