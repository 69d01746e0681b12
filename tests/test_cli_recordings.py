"""`parley recordings` as a user types it: start, list, get, stop, delete, download, whose
link (a gateway path for a local folder) is resolved against the gateway's URL and streamed to
a file, and a recording's transcript and summary, read from the AI service.

Control and the AI service here are in-process fakes of RecordingService, TranscriptionService
and SummaryService that record the requests (their rules are tested with control and ai); the
gateway is the real one, serving a recordings folder."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.api import httpbody_pb2
from google.protobuf import empty_pb2

from gateway import GatewayServer, GatewaySettings
from parley import ParleyError, sign_file_token
from parley._download import DEFAULT_GATEWAY_URL, resolve_link
from parley.ai.v1 import resources_pb2 as ai_res
from parley.ai.v1 import summary_service_pb2 as summary_pb
from parley.ai.v1 import summary_service_pb2_grpc as summary_grpc
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.ai.v1 import transcription_service_pb2_grpc as transcription_grpc
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import recording_service_pb2_grpc as recording_grpc

PARLEY = [sys.executable, "-c", "import launcher; launcher.main()"]
FILES_SECRET = "test-files-secret-" + "c" * 32
ROOM = "abc-defg-hij"
RECORDING_ID = "b" * 32
RECORDING = f"rooms/{ROOM}/recordings/{RECORDING_ID}"
CONTENT = os.urandom(300_000)
TRANSCRIPTION = "transcriptions/" + "d" * 32
SUMMARY = "summaries/" + "e" * 32
#: A recording that was not transcribed.
PLAIN_RECORDING = f"rooms/{ROOM}/recordings/{'f' * 32}"
MINUTES = ai_res.Minutes(
    summary="The offers go out on Friday.",
    topics=["Offers for the new customer"],
    next_steps=[ai_res.NextStep(description="Send the offers", owner="Maria")],
)
MARKDOWN = (
    "## Summary\n\nThe offers go out on Friday.\n\n## Topics\n\n- Offers for the new customer\n\n"
    "## Next steps\n\n- Send the offers — **Maria**\n"
)
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class FakeRecordings(recording_grpc.RecordingServiceServicer):
    requests: list[tuple[str, Any]] = field(default_factory=list)
    #: What GetRecordingDownloadLink hands out: a file under the folder, valid for that long.
    link_path: str = f"{ROOM}/meeting.mp4"
    link_ttl: float = 60

    def _recording(self, name: str = RECORDING, **fields: Any) -> recording_pb.Recording:
        return recording_pb.Recording(
            name=name, mode=recording_pb.RECORDING_MODE_SCREEN_RECORDING, creator="users/me", **fields
        )

    async def StartRecording(self, request: recording_pb.StartRecordingRequest, context: Context) -> Any:
        self.requests.append(("start", request))
        return recording_pb.Recording(
            name=RECORDING,
            mode=request.recording.mode,
            options=request.recording.options,
            state=recording_pb.RECORDING_STATE_INITIATED,
        )

    async def StopRecording(self, request: recording_pb.StopRecordingRequest, context: Context) -> Any:
        self.requests.append(("stop", request))
        return self._recording(request.name, state=recording_pb.RECORDING_STATE_STOPPED)

    async def GetRecording(self, request: recording_pb.GetRecordingRequest, context: Context) -> Any:
        self.requests.append(("get", request))
        jobs = {} if request.name == PLAIN_RECORDING else {"transcription": TRANSCRIPTION, "summary": SUMMARY}
        return self._recording(
            request.name,
            state=recording_pb.RECORDING_STATE_SAVED,
            file=recording_pb.RecordingFile(content_type="video/mp4", size_bytes=len(CONTENT)),
            **jobs,
        )

    async def ListRecordings(self, request: recording_pb.ListRecordingsRequest, context: Context) -> Any:
        self.requests.append(("list", request))
        saved = recording_pb.RecordingFile(content_type="video/mp4", size_bytes=2_500_000)
        return recording_pb.ListRecordingsResponse(
            recordings=[self._recording(state=recording_pb.RECORDING_STATE_SAVED, file=saved)]
        )

    async def DeleteRecording(self, request: recording_pb.DeleteRecordingRequest, context: Context) -> Any:
        self.requests.append(("delete", request))
        return empty_pb2.Empty()

    async def GetRecordingDownloadLink(
        self, request: recording_pb.GetRecordingDownloadLinkRequest, context: Context
    ) -> Any:
        self.requests.append(("download", request))
        token = sign_file_token(
            FILES_SECRET, path=self.link_path, filename="Weekly sync.mp4", content_type="video/mp4", ttl=self.link_ttl
        )
        return recording_pb.RecordingDownloadLink(
            url=f"/v1/files/{token}",
            filename="Weekly sync.mp4",
            file=recording_pb.RecordingFile(content_type="video/mp4", size_bytes=len(CONTENT)),
        )


@dataclass
class FakeAi(transcription_grpc.TranscriptionServiceServicer, summary_grpc.SummaryServiceServicer):
    requests: list[tuple[str, Any]] = field(default_factory=list)
    summary_state: ai_res.JobState.ValueType = ai_res.JOB_STATE_SUCCEEDED

    async def ExportTranscription(self, request: transcription_pb.ExportTranscriptionRequest, context: Context) -> Any:
        self.requests.append(("export", request))
        name = transcription_pb.TranscriptFormat.Name(request.format)
        return httpbody_pb2.HttpBody(content_type="text/plain", data=f"Maria: hello ({name})\n".encode())

    async def GetSummary(self, request: summary_pb.GetSummaryRequest, context: Context) -> Any:
        self.requests.append(("summary", request))
        if self.summary_state != ai_res.JOB_STATE_SUCCEEDED:
            return ai_res.Summary(
                name=request.name, transcription=TRANSCRIPTION, state=self.summary_state, progress=0.4
            )
        return ai_res.Summary(
            name=request.name,
            transcription=TRANSCRIPTION,
            state=self.summary_state,
            markdown=MARKDOWN,
            minutes=MINUTES,
            progress=1.0,
        )


@dataclass
class Stack:
    control: str
    gateway_url: str
    fake: FakeRecordings
    ai: FakeAi


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    folder = tmp_path_factory.mktemp("recordings")
    (folder / ROOM).mkdir()
    (folder / ROOM / "meeting.mp4").write_bytes(CONTENT)
    fake = FakeRecordings()  # type: ignore[abstract]  # the storage hook is the gateway's business
    ai = FakeAi()  # type: ignore[abstract]  # only what the CLI's commands call
    server = grpc.aio.server()
    recording_grpc.add_RecordingServiceServicer_to_server(fake, server)
    transcription_grpc.add_TranscriptionServiceServicer_to_server(ai, server)
    summary_grpc.add_SummaryServiceServicer_to_server(ai, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    settings = GatewaySettings(
        control_target=f"127.0.0.1:{port}",
        session_secret="test-session-secret-" + "s" * 32,
        secure_cookies=False,
        files_secret=FILES_SECRET,
        recordings_dir=folder,
    )
    try:
        async with GatewayServer(settings) as gateway:
            yield Stack(f"127.0.0.1:{port}", gateway.url, fake, ai)
    finally:
        await server.stop(None)


async def parley(
    stack: Stack, *args: str, cwd: Path, ok: bool = True, env: dict[str, str] | None = None
) -> tuple[str, str]:
    """Runs the CLI in a subprocess (the fake control and the gateway keep serving meanwhile)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    process = await asyncio.create_subprocess_exec(
        *PARLEY,
        "--data-dir",
        str(cwd / "no-parley-up"),
        "--url",
        stack.control,
        "--api-key",
        "pk_test",
        "--api-secret",
        "secret",
        *args,
        cwd=cwd,
        env={**clean, "PARLEY_AI_URL": stack.control, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert (process.returncode == 0) == ok, out.decode() + err.decode()
    return out.decode(), err.decode()


async def test_start_list_get_stop_delete(stack: Stack, tmp_path: Path) -> None:
    out, _ = await parley(
        stack, "recordings", "start", ROOM, "--audio-only", "--transcribe", "--language", "fr", cwd=tmp_path
    )
    kind, request = stack.fake.requests[-1]
    assert kind == "start" and request.parent == f"rooms/{ROOM}"
    assert request.recording.mode == recording_pb.RECORDING_MODE_TRANSCRIPT
    assert request.recording.options == recording_pb.RecordingOptions(language="fr", transcribe=True)
    assert f"{ROOM}/{RECORDING_ID}" in out and "transcript, language fr" in out and "initiated" in out
    out, _ = await parley(stack, "--json", "recordings", "start", ROOM, cwd=tmp_path)
    assert json.loads(out)["mode"] == "RECORDING_MODE_SCREEN_RECORDING"

    out, _ = await parley(stack, "recordings", "list", cwd=tmp_path)
    assert stack.fake.requests[-1][1].parent == "rooms/-"  # every room
    header, row = out.splitlines()
    assert header.split() == ["RECORDING", "MODE", "STATE", "CREATED", "SIZE"]
    assert row.split()[:3] == [f"{ROOM}/{RECORDING_ID}", "screen_recording", "saved"]
    assert row.endswith("2.5 MB")
    await parley(stack, "recordings", "list", ROOM, cwd=tmp_path)
    assert stack.fake.requests[-1][1].parent == f"rooms/{ROOM}"

    # ROOM/ID or the full name.
    out, _ = await parley(stack, "recordings", "get", f"{ROOM}/{RECORDING_ID}", cwd=tmp_path)
    assert stack.fake.requests[-1][1].name == RECORDING
    assert "saved" in out and "video/mp4, 300.0 kB" in out and "transcript: transcriptions/" in out
    out, _ = await parley(stack, "recordings", "stop", RECORDING, cwd=tmp_path)
    assert stack.fake.requests[-1][0] == "stop" and "stopped" in out
    out, _ = await parley(stack, "recordings", "delete", RECORDING, cwd=tmp_path)
    assert stack.fake.requests[-1][0] == "delete" and out.strip() == f"deleted {RECORDING}"
    _, err = await parley(stack, "recordings", "get", RECORDING_ID, cwd=tmp_path, ok=False)
    assert "ROOM/RECORDING" in err


async def test_transcript_of_a_recording(stack: Stack, tmp_path: Path) -> None:
    out, _ = await parley(stack, "recordings", "transcript", f"{ROOM}/{RECORDING_ID}", cwd=tmp_path)
    assert stack.fake.requests[-1][1].name == RECORDING
    kind, request = stack.ai.requests[-1]
    assert kind == "export" and request.name == TRANSCRIPTION
    assert out == "Maria: hello (TRANSCRIPT_FORMAT_TEXT)\n"
    for fmt in ("srt", "webvtt", "json"):
        out, _ = await parley(stack, "recordings", "transcript", RECORDING, "--format", fmt, cwd=tmp_path)
        assert f"TRANSCRIPT_FORMAT_{fmt.upper()}" in out
    out, _ = await parley(stack, "--json", "recordings", "transcript", RECORDING, "--format", "srt", cwd=tmp_path)
    assert json.loads(out) == {
        "transcription": TRANSCRIPTION,
        "format": "srt",
        "transcript": "Maria: hello (TRANSCRIPT_FORMAT_SRT)\n",
    }
    _, err = await parley(stack, "recordings", "transcript", RECORDING, "--format", "pdf", cwd=tmp_path, ok=False)
    assert "choose json, text, srt, webvtt" in err or "choose" in err
    # A recording that was not transcribed says so.
    _, err = await parley(stack, "recordings", "transcript", PLAIN_RECORDING, cwd=tmp_path, ok=False)
    assert f"{PLAIN_RECORDING} (saved) has no transcription: it was not asked for (--transcribe)" in err


async def test_summary_of_a_recording(stack: Stack, tmp_path: Path) -> None:
    out, _ = await parley(stack, "recordings", "summary", f"{ROOM}/{RECORDING_ID}", cwd=tmp_path)
    kind, request = stack.ai.requests[-1]
    assert kind == "summary" and request.name == SUMMARY
    assert out == MARKDOWN
    out, _ = await parley(stack, "--json", "recordings", "summary", RECORDING, cwd=tmp_path)
    data = json.loads(out)
    assert data["minutes"] == {
        "summary": "The offers go out on Friday.",
        "topics": ["Offers for the new customer"],
        "nextSteps": [{"description": "Send the offers", "owner": "Maria"}],
    }
    assert data["markdown"] == MARKDOWN and data["name"] == SUMMARY
    stack.ai.summary_state = ai_res.JOB_STATE_RUNNING
    try:
        _, err = await parley(stack, "recordings", "summary", RECORDING, cwd=tmp_path, ok=False)
    finally:
        stack.ai.summary_state = ai_res.JOB_STATE_SUCCEEDED
    assert f"{SUMMARY} is running (40% done)" in err
    _, err = await parley(stack, "recordings", "summary", PLAIN_RECORDING, cwd=tmp_path, ok=False)
    assert "has no summary" in err


async def test_download_through_the_gateway(stack: Stack, tmp_path: Path) -> None:
    out, _ = await parley(
        stack, "--gateway-url", stack.gateway_url, "recordings", "download", RECORDING, "-o", "copy.mp4", cwd=tmp_path
    )
    assert (tmp_path / "copy.mp4").read_bytes() == CONTENT
    assert out.strip() == "saved copy.mp4 (300.0 kB)"
    # Its own name by default; the gateway's URL from the environment.
    env = {"PARLEY_GATEWAY_URL": stack.gateway_url}
    out, _ = await parley(stack, "--json", "recordings", "download", f"{ROOM}/{RECORDING_ID}", cwd=tmp_path, env=env)
    assert json.loads(out) == {"file": "Weekly sync.mp4", "sizeBytes": len(CONTENT)}
    assert (tmp_path / "Weekly sync.mp4").read_bytes() == CONTENT


async def test_a_failed_download_leaves_no_file(stack: Stack, tmp_path: Path) -> None:
    args = ("--gateway-url", stack.gateway_url, "recordings", "download", RECORDING, "-o", "x.mp4")
    stack.fake.link_ttl = -10  # expired as it arrives
    try:
        _, err = await parley(stack, *args, cwd=tmp_path, ok=False)
    finally:
        stack.fake.link_ttl = 60
    assert "HTTP 403" in err and "invalid download token" in err
    stack.fake.link_path = f"{ROOM}/gone.mp4"
    try:
        _, err = await parley(stack, *args, cwd=tmp_path, ok=False)
    finally:
        stack.fake.link_path = f"{ROOM}/meeting.mp4"
    assert "HTTP 404" in err
    assert os.listdir(tmp_path) == []  # nothing half-written


def test_links_are_resolved_against_the_gateway() -> None:
    presigned = "https://s3.example.com/recordings/a.mp4?X-Amz-Signature=abc"
    assert resolve_link(presigned, "http://gateway:8080") == presigned
    assert resolve_link("/v1/files/t", "https://example.com/parley/") == "https://example.com/parley/v1/files/t"
    assert resolve_link("/v1/files/t", "") == f"{DEFAULT_GATEWAY_URL}/v1/files/t"
    with pytest.raises(ParleyError):
        resolve_link("v1/files/t", "http://gateway:8080")
