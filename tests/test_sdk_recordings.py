"""The SDK's ``client.recordings`` (control's RecordingService) and ``client.egress`` (the egress
service, at its own address): the requests they send, paging, and a client without an egress
service. The servers are in-process fakes that record the requests: control's and the egress
service's behaviour are tested with them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2

from parley import Client, Credentials, ParleyError, load_credentials, save_credentials
from parley.control.v1 import recording_service_pb2 as recording_pb
from parley.control.v1 import recording_service_pb2_grpc as recording_grpc
from parley.egress.v1 import egress_service_pb2 as egress_pb
from parley.egress.v1 import egress_service_pb2_grpc as egress_grpc
from parley.egress.v1 import resources_pb2 as egress_res

ROOM = "abc-defg-hij"
RECORDING = f"rooms/{ROOM}/recordings/{'a' * 32}"
EGRESS = f"egresses/{'e' * 32}"
Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class Heard:
    requests: list[tuple[str, Any, str]] = field(default_factory=list)

    def note(self, method: str, request: Any, context: Context) -> None:
        self.requests.append((method, request, str(dict(context.invocation_metadata() or ()).get("authorization"))))


class FakeRecordings(recording_grpc.RecordingServiceServicer):
    def __init__(self, heard: Heard) -> None:
        self.heard = heard

    async def StartRecording(self, request: recording_pb.StartRecordingRequest, context: Context) -> Any:
        self.heard.note("StartRecording", request, context)
        recording = recording_pb.Recording(name=RECORDING, state=recording_pb.RECORDING_STATE_INITIATED)
        recording.mode = request.recording.mode
        recording.options.CopyFrom(request.recording.options)
        return recording

    async def StopRecording(self, request: recording_pb.StopRecordingRequest, context: Context) -> Any:
        self.heard.note("StopRecording", request, context)
        return recording_pb.Recording(name=request.name, state=recording_pb.RECORDING_STATE_STOPPED)

    async def GetRecording(self, request: recording_pb.GetRecordingRequest, context: Context) -> Any:
        self.heard.note("GetRecording", request, context)
        return recording_pb.Recording(name=request.name)

    async def ListRecordings(self, request: recording_pb.ListRecordingsRequest, context: Context) -> Any:
        self.heard.note("ListRecordings", request, context)
        page = int(request.page_token or 0)
        names = [f"{request.parent}/recordings/{page:032x}"]
        return recording_pb.ListRecordingsResponse(
            recordings=[recording_pb.Recording(name=n) for n in names],
            next_page_token=str(page + 1) if page < 2 else "",
        )

    async def DeleteRecording(self, request: recording_pb.DeleteRecordingRequest, context: Context) -> Any:
        self.heard.note("DeleteRecording", request, context)
        return empty_pb2.Empty()

    async def GetRecordingDownloadLink(
        self, request: recording_pb.GetRecordingDownloadLinkRequest, context: Context
    ) -> Any:
        self.heard.note("GetRecordingDownloadLink", request, context)
        return recording_pb.RecordingDownloadLink(url="/v1/files/token", filename="sync.mp4")


class FakeEgress(egress_grpc.EgressServiceServicer):
    def __init__(self, heard: Heard) -> None:
        self.heard = heard

    async def StartRoomCompositeEgress(
        self, request: egress_pb.StartRoomCompositeEgressRequest, context: Context
    ) -> Any:
        self.heard.note("StartRoomCompositeEgress", request, context)
        return egress_res.Egress(name=EGRESS, room=request.room, room_composite=request.options)

    async def StartTrackEgress(self, request: egress_pb.StartTrackEgressRequest, context: Context) -> Any:
        self.heard.note("StartTrackEgress", request, context)
        return egress_res.Egress(name=EGRESS, room=request.room, track=request.track)

    async def StopEgress(self, request: egress_pb.StopEgressRequest, context: Context) -> Any:
        self.heard.note("StopEgress", request, context)
        return egress_res.Egress(name=request.name, status=egress_res.EGRESS_STATUS_ENDING)

    async def GetEgress(self, request: egress_pb.GetEgressRequest, context: Context) -> Any:
        self.heard.note("GetEgress", request, context)
        if request.name != EGRESS:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no egress {request.name}")
        return egress_res.Egress(name=request.name)

    async def ListEgresses(self, request: egress_pb.ListEgressesRequest, context: Context) -> Any:
        self.heard.note("ListEgresses", request, context)
        return egress_pb.ListEgressesResponse(egresses=[egress_res.Egress(name=EGRESS)])

    async def WatchEgress(self, request: egress_pb.WatchEgressRequest, context: Context) -> AsyncIterator[Any]:
        self.heard.note("WatchEgress", request, context)
        for status in (egress_res.EGRESS_STATUS_ACTIVE, egress_res.EGRESS_STATUS_COMPLETE):
            yield egress_res.Egress(name=request.name, status=status)


@dataclass
class Servers:
    control: str
    egress: str
    heard: Heard


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[Servers]:
    heard = Heard()
    control, egress = grpc.aio.server(), grpc.aio.server()
    # The storage hook is the gateway's business (tests/test_gateway_recordings.py).
    recording_grpc.add_RecordingServiceServicer_to_server(FakeRecordings(heard), control)  # type: ignore[abstract]
    egress_grpc.add_EgressServiceServicer_to_server(FakeEgress(heard), egress)
    ports = [server.add_insecure_port("127.0.0.1:0") for server in (control, egress)]
    for server in (control, egress):
        await server.start()
    try:
        yield Servers(f"127.0.0.1:{ports[0]}", f"127.0.0.1:{ports[1]}", heard)
    finally:
        for server in (control, egress):
            await server.stop(None)


async def test_recordings(servers: Servers) -> None:
    async with Client(servers.control, bearer="pk_x.secret") as client:
        started = await client.recordings.start(ROOM, mode="transcript", language="fr", collect_metadata=True)
        method, request, authorization = servers.heard.requests[-1]
        assert (method, request.parent, authorization) == ("StartRecording", f"rooms/{ROOM}", "Bearer pk_x.secret")
        assert request.recording.mode == recording_pb.RECORDING_MODE_TRANSCRIPT
        assert request.recording.options == recording_pb.RecordingOptions(language="fr", collect_metadata=True)
        assert started.name == RECORDING and started.state == recording_pb.RECORDING_STATE_INITIATED
        default = await client.recordings.start(f"rooms/{ROOM}", transcribe=True)
        assert default.mode == recording_pb.RECORDING_MODE_SCREEN_RECORDING and default.options.transcribe

        # By resource name, or by id with the room.
        assert (await client.recordings.stop(RECORDING)).state == recording_pb.RECORDING_STATE_STOPPED
        assert (await client.recordings.get("a" * 32, room=ROOM)).name == RECORDING
        await client.recordings.delete(RECORDING)
        assert servers.heard.requests[-1][0] == "DeleteRecording"
        link = await client.recordings.download_link(RECORDING)
        assert link.url == "/v1/files/token" and servers.heard.requests[-1][1].name == RECORDING

        everything = [r.name async for r in client.recordings.list(page_size=5)]
        assert everything == [f"rooms/-/recordings/{page:032x}" for page in range(3)]
        lists = [r for m, r, _ in servers.heard.requests if m == "ListRecordings"]
        assert [(r.parent, r.page_size, r.page_token) for r in lists] == [
            ("rooms/-", 5, ""),
            ("rooms/-", 5, "1"),
            ("rooms/-", 5, "2"),
        ]
        one_room = [r.name async for r in client.recordings.list(ROOM)]
        assert one_room[0].startswith(f"rooms/{ROOM}/recordings/")


async def test_egress_at_its_own_address(servers: Servers) -> None:
    async with Client(servers.control, bearer="pk_y.secret", egress_target=f"grpc://{servers.egress}") as client:
        output = egress_res.EgressOutput(filename_template="{room}/{time}")
        composite = await client.egress.start_room_composite(
            ROOM,
            audio_only=True,
            layout=egress_res.COMPOSITE_LAYOUT_SPEAKER,
            output=output,
            max_duration=timedelta(minutes=90),
            egress_id="f" * 32,
        )
        method, request, authorization = servers.heard.requests[-1]
        assert method == "StartRoomCompositeEgress" and authorization == "Bearer pk_y.secret"
        assert request.room == f"rooms/{ROOM}" and request.options.audio_only and request.egress_id == "f" * 32
        assert request.options.layout == egress_res.COMPOSITE_LAYOUT_SPEAKER and request.output == output
        assert request.max_duration.seconds == 5400
        assert composite.room_composite.audio_only
        plain = await client.egress.start_room_composite(ROOM)
        assert not servers.heard.requests[-1][1].HasField("max_duration") and plain.name == EGRESS

        track = await client.egress.start_track(ROOM, "TR_abc")
        assert track.track.track_sid == "TR_abc"
        assert (await client.egress.stop("e" * 32)).status == egress_res.EGRESS_STATUS_ENDING
        assert (await client.egress.get(EGRESS)).name == EGRESS
        with pytest.raises(ParleyError) as missing:
            await client.egress.get("0" * 32)
        assert missing.value.code == grpc.StatusCode.NOT_FOUND
        assert [e.name async for e in client.egress.list(room=ROOM, active=True)] == [EGRESS]
        listed = servers.heard.requests[-1][1]
        assert (listed.room, listed.active) == (f"rooms/{ROOM}", True)
        assert [e.name async for e in client.egress.list()] == [EGRESS]
        assert servers.heard.requests[-1][1].room == ""
        statuses = [e.status async for e in client.egress.watch(EGRESS)]
        assert statuses == [egress_res.EGRESS_STATUS_ACTIVE, egress_res.EGRESS_STATUS_COMPLETE]
        # Another caller over the same channels.
        other = client.with_bearer("pk_z.secret")
        await other.egress.get(EGRESS)
        assert servers.heard.requests[-1][2] == "Bearer pk_z.secret"


async def test_a_client_without_an_egress_service(servers: Servers) -> None:
    async with Client(servers.control) as client:
        assert client.egress_channel is None
        with pytest.raises(ParleyError, match="PARLEY_EGRESS_URL"):
            await client.egress.get(EGRESS)


def test_the_egress_and_gateway_urls_are_credentials(tmp_path: Path) -> None:
    save_credentials(tmp_path, Credentials(url="c:1", egress_url="e:2", gateway_url="http://g:3"))
    saved = load_credentials(data_dir=tmp_path, env={})
    assert (saved.egress_url, saved.gateway_url) == ("e:2", "http://g:3")
    env = {"PARLEY_EGRESS_URL": "e:4", "PARLEY_GATEWAY_URL": "http://g:5"}
    from_env = load_credentials(data_dir=tmp_path, env=env)
    assert (from_env.egress_url, from_env.gateway_url) == ("e:4", "http://g:5")
