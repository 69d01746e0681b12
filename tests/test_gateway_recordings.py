"""The gateway's edges of recording: ``parley.egress.*`` routes go to the egress service, the
storage hook takes the bucket notification's JSON as it is (a ``Struct``) with its bearer, and
``/v1/files/{token}`` serves recordings of a local folder to holders of a valid download token.

The backends here are small in-process gRPC servers that record what reached them: the gateway's
behaviour is the subject, not control's or the egress service's."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from gateway import GatewayServer, GatewaySettings, Router, load_descriptor_set, routes_for
from gateway._app import backend_of, parley_services
from gateway._files import content_disposition
from gateway._transcode import build_request
from parley import sign_file_token
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import recording_service_pb2_grpc as recording_grpc
from parley.egress.v1 import egress_service_pb2 as egress_pb
from parley.egress.v1 import egress_service_pb2_grpc as egress_grpc
from parley.egress.v1 import resources_pb2 as egress_res

SESSION_SECRET = "test-session-secret-" + "z" * 32
FILES_SECRET = "test-files-secret-" + "f" * 32
EGRESS_ID = "e" * 32
#: What MinIO POSTs to a webhook target when an object is written (``s3:ObjectCreated:Put``).
MINIO_EVENT: dict[str, Any] = {
    "EventName": "s3:ObjectCreated:Put",
    "Key": "recordings/abc-defg-hij/20261201T101500Z-0123.mp4",
    "Records": [
        {
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "eventName": "s3:ObjectCreated:Put",
            "s3": {
                "bucket": {"name": "recordings", "arn": "arn:aws:s3:::recordings"},
                "object": {"key": "abc-defg-hij%2F20261201T101500Z-0123.mp4", "size": 1048576, "eTag": "d41d8c"},
            },
            "userIdentity": {"principalId": "minio"},
            "requestParameters": {"sourceIPAddress": "10.0.0.5"},
        }
    ],
}


# -- routing ---------------------------------------------------------------------------------


def test_egress_services_go_to_the_egress_service() -> None:
    services: dict[str, set[str]] = {}
    for route in routes_for(parley_services(load_descriptor_set())):
        services.setdefault(backend_of(route), set()).add(route.method.containing_service.full_name)
    assert services["egress"] == {"parley.egress.v1.EgressService"}
    assert "parley.control.v1.RecordingService" in services["control"]
    # EgressReportService (egress nodes -> control) has no REST route.
    assert not any(s.endswith("EgressReportService") for backend in services.values() for s in backend)


def test_settings_from_the_environment(tmp_path: Path) -> None:
    env = {"PARLEY_CONTROL_TARGET": "control:50051", "PARLEY_SESSION_SECRET": SESSION_SECRET}
    plain = GatewaySettings.from_env(env)
    assert (plain.egress_target, plain.files_secret, plain.recordings_dir) == ("", "", None)
    configured = GatewaySettings.from_env(
        {
            **env,
            "PARLEY_EGRESS_TARGET": "egress:50054",
            "PARLEY_FILES_SECRET": FILES_SECRET,
            "PARLEY_RECORDINGS_DIR": str(tmp_path),
        }
    )
    assert configured.egress_target == "egress:50054" and configured.recordings_dir == tmp_path
    assert configured.files_secret == FILES_SECRET and FILES_SECRET not in repr(configured)


def test_a_storage_notification_is_taken_as_it_comes() -> None:
    """The body maps to ``NotifyStorageEventRequest.event``, a Struct: any JSON object, its
    keys as the storage spells them."""
    router = Router(routes_for(parley_services(load_descriptor_set())))
    match = router.match("POST", "/v1/storage:notify")
    assert match is not None and match.route.method.name == "NotifyStorageEvent"
    request = build_request(match, json.dumps(MINIO_EVENT).encode(), {})
    assert isinstance(request, recording_pb.NotifyStorageEventRequest)
    assert json_format.MessageToDict(request.event) == MINIO_EVENT
    s3_event = {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": "a.ogg", "size": 3}}}]}
    request = build_request(match, json.dumps(s3_event).encode(), {})
    assert json_format.MessageToDict(request.event) == s3_event  # type: ignore[attr-defined]


# -- through a running gateway ------------------------------------------------------------------


@dataclass
class Heard:
    """What the fake backends received: (method, authorization, request)."""

    calls: list[tuple[str, str, Any]] = field(default_factory=list)

    def note(self, method: str, context: grpc.aio.ServicerContext[Any, Any], request: Any) -> None:
        authorization = dict(context.invocation_metadata() or ()).get("authorization", "")
        self.calls.append((method, str(authorization), request))


class FakeRecordings(recording_grpc.RecordingServiceServicer):
    def __init__(self, heard: Heard) -> None:
        self.heard = heard

    async def NotifyStorageEvent(
        self, request: recording_pb.NotifyStorageEventRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> recording_pb.NotifyStorageEventResponse:
        self.heard.note("NotifyStorageEvent", context, request)
        return recording_pb.NotifyStorageEventResponse(saved=[f"rooms/abc-defg-hij/recordings/{'a' * 32}"])


class FakeEgress(egress_grpc.EgressServiceServicer):
    def __init__(self, heard: Heard) -> None:
        self.heard = heard

    def _egress(self, status: egress_res.EgressStatus.ValueType) -> egress_res.Egress:
        return egress_res.Egress(name=f"egresses/{EGRESS_ID}", room="rooms/abc-defg-hij", status=status)

    async def StartRoomCompositeEgress(
        self, request: egress_pb.StartRoomCompositeEgressRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> egress_res.Egress:
        self.heard.note("StartRoomCompositeEgress", context, request)
        return self._egress(egress_res.EGRESS_STATUS_STARTING)

    async def WatchEgress(
        self, request: egress_pb.WatchEgressRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[egress_res.Egress]:
        self.heard.note("WatchEgress", context, request)
        for status in (egress_res.EGRESS_STATUS_ACTIVE, egress_res.EGRESS_STATUS_COMPLETE):
            yield self._egress(status)


@dataclass
class Backends:
    control: str
    egress: str
    heard: Heard


@pytest.fixture(scope="module")
async def backends() -> AsyncIterator[Backends]:
    heard = Heard()
    control, egress = grpc.aio.server(), grpc.aio.server()
    # Only the methods under test: the others answer UNIMPLEMENTED, as generated.
    recording_grpc.add_RecordingServiceServicer_to_server(FakeRecordings(heard), control)  # type: ignore[abstract]
    egress_grpc.add_EgressServiceServicer_to_server(FakeEgress(heard), egress)  # type: ignore[abstract]
    ports = [server.add_insecure_port("127.0.0.1:0") for server in (control, egress)]
    for server in (control, egress):
        await server.start()
    try:
        yield Backends(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", heard)
    finally:
        for server in (control, egress):
            await server.stop(None)


@pytest.fixture(scope="module")
def recordings_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("recordings")
    (folder / "abc-defg-hij").mkdir()
    (folder / "abc-defg-hij" / "meeting.mp4").write_bytes(bytes(range(256)) * 40)  # 10240 bytes
    return folder


def _settings(backends: Backends, recordings_dir: Path | None, *, egress: bool = True) -> GatewaySettings:
    return GatewaySettings(
        control_target=backends.control,
        egress_target=backends.egress if egress else "",
        session_secret=SESSION_SECRET,
        secure_cookies=False,
        files_secret=FILES_SECRET if recordings_dir else "",
        recordings_dir=recordings_dir,
    )


@pytest.fixture(scope="module")
async def http(backends: Backends, recordings_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        GatewayServer(_settings(backends, recordings_dir)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as client,
    ):
        yield client


async def test_the_storage_hook_forwards_the_event_and_its_bearer(http: httpx.AsyncClient, backends: Backends) -> None:
    bearer = {"authorization": "Bearer pk_" + "k" * 24 + ".the-secret"}  # MinIO's auth_token: an API key
    response = await http.post("/v1/storage:notify", json=MINIO_EVENT, headers=bearer)
    assert response.status_code == 200, response.text
    assert response.json() == {"saved": [f"rooms/abc-defg-hij/recordings/{'a' * 32}"]}
    method, authorization, request = backends.heard.calls[-1]
    assert method == "NotifyStorageEvent" and authorization == bearer["authorization"]
    assert isinstance(request.event, struct_pb2.Struct)
    assert json_format.MessageToDict(request.event) == MINIO_EVENT
    refused = await http.post("/v1/storage:notify", content=b"[1, 2]", headers=bearer)
    assert refused.status_code == 400 and refused.json()["code"] == 3  # an object, or nothing


async def test_egress_routes_reach_the_egress_service(http: httpx.AsyncClient, backends: Backends) -> None:
    auth = {"authorization": "Bearer pk_" + "m" * 24 + ".secret"}
    body = {"room": "rooms/abc-defg-hij", "options": {"audioOnly": True}, "maxDuration": "3600s"}
    started = await http.post("/v1/egresses:startRoomComposite", json=body, headers=auth)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "EGRESS_STATUS_STARTING"
    method, authorization, request = backends.heard.calls[-1]
    assert method == "StartRoomCompositeEgress" and authorization == auth["authorization"]
    assert request.options.audio_only and request.max_duration.seconds == 3600

    async with http.stream("GET", f"/v1/egresses/{EGRESS_ID}:watch", headers=auth) as watched:
        assert watched.headers["content-type"] == "application/x-ndjson"
        lines = [json.loads(line) async for line in watched.aiter_lines() if line.strip()]
    assert [line["result"]["status"] for line in lines] == ["EGRESS_STATUS_ACTIVE", "EGRESS_STATUS_COMPLETE"]


async def test_a_gateway_without_an_egress_service(backends: Backends) -> None:
    async with (
        GatewayServer(_settings(backends, None, egress=False)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        expected = {"code": 14, "message": "the egress service is not configured on this gateway", "details": []}
        for response in (
            await http.get("/v1/egresses"),
            await http.post("/v1/egresses:startTrack", json={"room": "rooms/a", "track": {"trackSid": "TR_a"}}),
        ):
            assert response.status_code == 503 and response.json() == expected
        token = sign_file_token(FILES_SECRET, path="a/b.mp4", filename="b.mp4", content_type="video/mp4", ttl=60)
        no_folder = await http.get(f"/v1/files/{token}")
        assert no_folder.status_code == 503 and no_folder.json()["code"] == 14


# -- downloads ---------------------------------------------------------------------------------


def _token(path: str = "abc-defg-hij/meeting.mp4", *, ttl: float = 60, secret: str = FILES_SECRET) -> str:
    return sign_file_token(secret, path=path, filename="Weekly sync.mp4", content_type="video/mp4", ttl=ttl)


async def test_a_valid_token_downloads_the_file(http: httpx.AsyncClient, recordings_dir: Path) -> None:
    whole = (recordings_dir / "abc-defg-hij" / "meeting.mp4").read_bytes()
    response = await http.get(f"/v1/files/{_token()}")
    assert response.status_code == 200 and response.content == whole
    assert response.headers["content-type"] == "video/mp4"
    disposition = response.headers["content-disposition"]
    assert disposition == "attachment; filename=\"Weekly sync.mp4\"; filename*=utf-8''Weekly%20sync.mp4"
    assert response.headers["accept-ranges"] == "bytes"
    # A range: resuming a download, or a player seeking.
    part = await http.get(f"/v1/files/{_token()}", headers={"range": "bytes=1000-1999"})
    assert part.status_code == 206 and part.content == whole[1000:2000]
    assert part.headers["content-range"] == f"bytes 1000-1999/{len(whole)}"
    head = await http.head(f"/v1/files/{_token()}")
    assert head.status_code == 200 and head.headers["content-length"] == str(len(whole))


def test_file_names_reach_old_and_new_clients() -> None:
    assert content_disposition('Réunion "lundi".mp4') == (
        "attachment; filename=\"R_union _lundi_.mp4\"; filename*=utf-8''R%C3%A9union%20%22lundi%22.mp4"
    )


async def test_bad_tokens_are_refused(http: httpx.AsyncClient) -> None:
    for token in (_token(ttl=-30), _token(secret="another-secret-" + "o" * 32), "not-a-token", _token()[:-4]):
        response = await http.get(f"/v1/files/{token}")
        assert response.status_code == 403, token
        body = response.json()
        assert body["code"] == 7 and body["message"].startswith("invalid download token") and body["details"] == []


async def test_a_missing_file_is_not_found(http: httpx.AsyncClient, recordings_dir: Path, tmp_path: Path) -> None:
    gone = await http.get(f"/v1/files/{_token('abc-defg-hij/deleted.mp4')}")
    assert gone.status_code == 404 and gone.json()["code"] == 5
    folder = await http.get(f"/v1/files/{_token('abc-defg-hij')}")
    assert folder.status_code == 404
    # A link inside the folder does not lead out of it.
    (tmp_path / "secret.txt").write_text("not a recording")
    os.symlink(tmp_path / "secret.txt", recordings_dir / "escape.mp4")
    escaped = await http.get(f"/v1/files/{_token('escape.mp4')}")
    assert escaped.status_code == 404
    assert secrets.compare_digest(escaped.json()["message"], gone.json()["message"])
