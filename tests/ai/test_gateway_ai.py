"""The REST gateway in front of the AI service: ``parley.ai.v1`` routes go to the AI service's
address (the rest to control), exports answer the file itself (``google.api.HttpBody``), and a
gateway without an AI service says so with a 503."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator, validate

from gateway import GatewayServer, GatewaySettings, load_descriptor_set, routes_for
from gateway._app import backend_of, parley_services
from gateway._openapi import OPENAPI_PATH

from .conftest import MEDIA_BUCKET, AiStack
from .media import speak

SENTENCE = "Good morning everyone. The budget meeting starts at nine tomorrow."
SUMMARY_TEXT = "Maria: The release moves to Thursday.\nTom: I will tell the support team today.\n"
#: Reads wait for the next line of a watch: the first transcription also loads the model.
TIMEOUT = httpx.Timeout(30.0, read=600.0)
ENDED = {"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"}
SESSION_SECRET = "test-session-secret-" + "y" * 32

Json = dict[str, Any]


def test_ai_services_go_to_the_ai_service() -> None:
    services: dict[str, set[str]] = {}
    for route in routes_for(parley_services(load_descriptor_set())):
        services.setdefault(backend_of(route), set()).add(route.method.containing_service.full_name)
    assert services["ai"] == {
        "parley.ai.v1.TranscriptionService",
        "parley.ai.v1.SummaryService",
        "parley.ai.v1.MetadataAgentService",
    }
    assert services["control"] and not any(s.startswith("parley.ai.") for s in services["control"])


def test_ai_target_setting() -> None:
    env = {"PARLEY_CONTROL_TARGET": "control:50051", "PARLEY_SESSION_SECRET": SESSION_SECRET}
    assert GatewaySettings.from_env(env).ai_target == ""
    assert GatewaySettings.from_env({**env, "PARLEY_AI_TARGET": "ai:50053"}).ai_target == "ai:50053"


def _settings(ai_stack: AiStack, ai_target: str) -> GatewaySettings:
    return GatewaySettings(
        control_target=ai_stack.control.target,
        ai_target=ai_target,
        session_secret=SESSION_SECRET,
        dev_login=True,
        secure_cookies=False,
    )


@pytest.fixture(scope="module")
async def http(ai_stack: AiStack) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of a gateway in front of control and the AI service."""
    async with (
        GatewayServer(_settings(ai_stack, ai_stack.ai.target)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=TIMEOUT) as client,
    ):
        yield client


async def _login(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    """A dev-login user's authorization header (logged in over REST) and ``users/{id}``."""
    response = await http.post("/v1/users:devLogin", json={"subject": f"rest-{secrets.token_hex(4)}"})
    assert response.status_code == 200, response.text
    body = response.json()
    return {"authorization": f"Bearer {body['accessToken']}"}, body["user"]["name"]


@pytest.fixture(scope="module")
async def user(http: httpx.AsyncClient) -> tuple[dict[str, str], str]:
    return await _login(http)


@pytest.fixture(scope="module")
def speech_key(ai_stack: AiStack, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A few seconds of speech in the ``meetings`` bucket."""
    wav = speak(SENTENCE, tmp_path_factory.mktemp("gateway-speech") / "speech.wav")
    key = f"gateway/{secrets.token_hex(8)}.wav"
    ai_stack.s3.upload_file(str(wav), MEDIA_BUCKET, key)
    return key


async def _watch(http: httpx.AsyncClient, name: str, headers: dict[str, str], *, within: float = 300.0) -> list[Json]:
    """Every line of ``GET /v1/{name}:watch`` until the stream ends; each is a ``result``."""
    lines = []
    async with asyncio.timeout(within), http.stream("GET", f"/v1/{name}:watch", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        async for line in response.aiter_lines():
            if line.strip():
                lines.append(json.loads(line))
    assert lines and all(set(line) == {"result"} for line in lines), lines
    return [line["result"] for line in lines]


async def test_transcription_over_rest(
    http: httpx.AsyncClient, user: tuple[dict[str, str], str], speech_key: str, ai_stack: AiStack
) -> None:
    auth, owner = user
    source = {"s3Object": {"bucket": MEDIA_BUCKET, "key": speech_key}}
    created = await http.post("/v1/transcriptions", json={"source": source, "language": "en"}, headers=auth)
    assert created.status_code == 200, created.text
    job = created.json()
    name = job["name"]
    assert name.startswith("transcriptions/") and job["state"] == "JOB_STATE_PENDING" and job["creator"] == owner

    updates = await _watch(http, name, auth)
    assert {u["name"] for u in updates} == {name}
    assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED", updates[-1]
    assert all(u["state"] not in ENDED for u in updates[:-1])
    assert all("segments" not in u for u in updates)

    basic = (await http.get(f"/v1/{name}", headers=auth)).json()
    assert basic["state"] == "JOB_STATE_SUCCEEDED" and "segments" not in basic
    full = await http.get(f"/v1/{name}", params={"view": "TRANSCRIPTION_VIEW_FULL"}, headers=auth)
    assert full.status_code == 200, full.text
    segments = full.json()["segments"]
    assert segments and full.json()["detectedLanguage"] == "en"
    heard = " ".join(s["text"] for s in segments).lower()
    assert "budget" in heard or "morning" in heard, heard
    assert all(s["startOffset"].endswith("s") for s in segments)

    # Exports are the file itself with the service's content type, byte for byte as over gRPC.
    client = ai_stack.anonymous.with_bearer(auth["authorization"].removeprefix("Bearer "))
    srt = await http.get(f"/v1/{name}:export", params={"format": "TRANSCRIPT_FORMAT_SRT"}, headers=auth)
    assert srt.status_code == 200, srt.text
    assert srt.headers["content-type"] == "application/x-subrip; charset=utf-8"
    assert srt.text.startswith("1\n") and " --> " in srt.text
    assert srt.text == await client.transcriptions.export(name, "srt")
    vtt = await http.get(f"/v1/{name}:export", params={"format": "TRANSCRIPT_FORMAT_WEBVTT"}, headers=auth)
    assert vtt.status_code == 200 and vtt.headers["content-type"] == "text/vtt; charset=utf-8"
    assert vtt.text.startswith("WEBVTT") and " --> " in vtt.text
    as_json = await http.get(f"/v1/{name}:export", params={"format": "TRANSCRIPT_FORMAT_JSON"}, headers=auth)
    assert as_json.headers["content-type"] == "application/json"
    exported = as_json.json()
    assert exported["language"] == "en" and len(exported["segments"]) == len(segments)
    assert "data" not in exported and "contentType" not in exported  # not the HttpBody's JSON
    text = await http.get(f"/v1/{name}:export", params={"format": "2"}, headers=auth)  # enum numbers work too
    assert text.headers["content-type"] == "text/plain; charset=utf-8" and text.text.strip()

    listed = await http.get("/v1/transcriptions", params={"pageSize": 10}, headers=auth)
    assert listed.status_code == 200
    assert name in [t["name"] for t in listed.json()["transcriptions"]]
    assert all("segments" not in t for t in listed.json()["transcriptions"])

    # Another user does not see it (not found, not forbidden: its existence is private).
    other, _ = await _login(http)
    assert (await http.get(f"/v1/{name}", headers=other)).status_code == 404
    others = (await http.get("/v1/transcriptions", headers=other)).json()
    assert others == {}  # proto3 JSON leaves out the empty list


async def test_exporting_a_job_that_has_not_succeeded(
    http: httpx.AsyncClient, user: tuple[dict[str, str], str]
) -> None:
    auth, _ = user
    source = {"s3Object": {"bucket": MEDIA_BUCKET, "key": f"gateway/missing-{secrets.token_hex(4)}.wav"}}
    created = await http.post("/v1/transcriptions", json={"source": source}, headers=auth)
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    params = {"format": "TRANSCRIPT_FORMAT_SRT"}

    pending = await http.get(f"/v1/{name}:export", params=params, headers=auth)
    assert pending.status_code == 400 and pending.headers["content-type"] == "application/json"
    assert pending.json()["code"] == 9 and "not succeeded" in pending.json()["message"]  # FAILED_PRECONDITION

    updates = await _watch(http, name, auth)
    assert updates[-1]["state"] == "JOB_STATE_FAILED" and updates[-1]["error"]["message"], updates[-1]
    failed = await http.get(f"/v1/{name}:export", params=params, headers=auth)
    assert failed.status_code == 400 and failed.json()["code"] == 9

    deleted = await http.delete(f"/v1/{name}", headers=auth)
    assert deleted.status_code == 200 and deleted.json() == {}
    assert (await http.get(f"/v1/{name}", headers=auth)).status_code == 404


async def test_summary_over_rest(http: httpx.AsyncClient, user: tuple[dict[str, str], str]) -> None:
    auth, owner = user
    created = await http.post("/v1/summaries", json={"text": SUMMARY_TEXT, "language": "en"}, headers=auth)
    assert created.status_code == 200, created.text
    name = created.json()["name"]
    assert name.startswith("summaries/") and created.json()["creator"] == owner

    updates = await _watch(http, name, auth, within=120.0)
    assert updates[-1]["state"] == "JOB_STATE_SUCCEEDED", updates[-1]
    summary = (await http.get(f"/v1/{name}", headers=auth)).json()
    assert summary["markdown"].startswith("## Summary\n") and summary["engine"]
    # The structure, in the REST names of its fields (empty lists are left out of JSON).
    assert summary["minutes"]["summary"].strip() and set(summary["minutes"]) <= {"summary", "topics", "nextSteps"}
    listed = (await http.get("/v1/summaries", headers=auth)).json()
    assert name in [s["name"] for s in listed["summaries"]]


async def test_errors(http: httpx.AsyncClient, user: tuple[dict[str, str], str]) -> None:
    auth, _ = user
    # No credentials: the AI service's answer, UNAUTHENTICATED.
    for response in (
        await http.get("/v1/transcriptions"),
        await http.post("/v1/summaries", json={"text": "hello"}),
        await http.get(f"/v1/transcriptions/{secrets.token_hex(16)}:export", params={"format": "3"}),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["code"] == 16

    bad_name = await http.get("/v1/transcriptions/not-an-id", headers=auth)
    assert bad_name.status_code == 400 and bad_name.json()["code"] == 3
    violations = [
        v
        for d in bad_name.json()["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["fieldViolations"]
    ]
    assert [v["field"] for v in violations] == ["name"], bad_name.json()

    no_format = await http.get(f"/v1/transcriptions/{secrets.token_hex(16)}:export", headers=auth)
    assert no_format.status_code == 400 and no_format.json()["code"] == 3
    unknown = await http.get(f"/v1/transcriptions/{secrets.token_hex(16)}", headers=auth)
    assert unknown.status_code == 404 and unknown.json()["code"] == 5
    bad_body = await http.post("/v1/transcriptions", json={"source": {"s3Object": {"bucket": "B!"}}}, headers=auth)
    assert bad_body.status_code == 400
    fields = {v["field"] for d in bad_body.json()["details"] for v in d.get("fieldViolations", [])}
    assert {"transcription.source.s3_object.bucket", "transcription.source.s3_object.key"} <= fields, fields
    # UploadMedia is gRPC-only (client streaming): no REST route.
    upload = await http.post("/v1/uploads", json={}, headers=auth)
    assert upload.status_code == 404 and upload.json()["code"] == 5


async def test_a_gateway_without_the_ai_service(ai_stack: AiStack) -> None:
    async with (
        GatewayServer(_settings(ai_stack, "")) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=TIMEOUT) as http,
    ):
        auth, _ = await _login(http)  # control's routes work
        expected = {"code": 14, "message": "the AI service is not configured on this gateway", "details": []}
        for response in (
            await http.get("/v1/transcriptions", headers=auth),
            await http.post("/v1/summaries", json={"text": "hello"}, headers=auth),
            await http.get(f"/v1/transcriptions/{secrets.token_hex(16)}:export", params={"format": "3"}),
            await http.get(f"/v1/summaries/{secrets.token_hex(16)}:watch", headers=auth),
        ):
            assert response.status_code == 503 and response.json() == expected
        # The API it documents stays the same: the routes exist, their backend is missing.
        document = (await http.get(OPENAPI_PATH)).json()
        assert "/v1/transcriptions" in document["paths"]


async def test_openapi_document(http: httpx.AsyncClient) -> None:
    response = await http.get(OPENAPI_PATH)
    assert response.status_code == 200
    document = response.json()
    validate(document, cls=OpenAPIV31SpecValidator)
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/v1/transcriptions"])
    assert paths["/v1/transcriptions/{transcription}:watch"]["get"]["responses"]["200"]["content"].keys() == {
        "application/x-ndjson"
    }
    export = paths["/v1/transcriptions/{transcription}:export"]["get"]
    assert export["operationId"] == "TranscriptionService_ExportTranscription"
    content = export["responses"]["200"]["content"]
    assert "application/json" not in content and content["*/*"]["schema"] == {"type": "string", "format": "binary"}
    assert export["responses"]["default"] == {"$ref": "#/components/responses/Error"}
    formats = next(p for p in export["parameters"] if p["name"] == "format")
    assert formats["in"] == "query" and formats["required"]
    assert "HttpBody" not in document["components"]["schemas"]
    operations = {op["operationId"] for ops in paths.values() for op in ops.values()}
    assert "SummaryService_CreateSummary" in operations and "TranscriptionService_UploadMedia" not in operations
