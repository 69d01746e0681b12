"""Recordings: owners and administrators (and ``recordings:*`` keys) start and stop them, the
egress service (a fake here: tests/fake_egress.py) records, its reports move them along, the
storage hook confirms files, links download them and deletion removes them. At most one
recording per room runs, whatever races. Runs on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote_plus

import grpc
import httpx
import pytest
from google.protobuf import struct_pb2

from control import ALL_SCOPES, ControlServer, ControlSettings
from control._recording_followups import SCAN_INTERVAL_SECONDS
from parley import Client, ParleyError
from parley._files import verify_file_token
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import recording_service_pb2_grpc as rec_grpc
from parley.control.v1 import resources_pb2 as res
from parley.egress.v1 import resources_pb2 as egress_res

from .conftest import FILES_SECRET, SERVICE_API_KEY, TOKEN_SECRET, Callers
from .fake_egress import FakeEgress

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

S = rec_pb.RecordingState
SCREEN, TRANSCRIPT = rec_pb.RECORDING_MODE_SCREEN_RECORDING, rec_pb.RECORDING_MODE_TRANSCRIPT
BUCKET = "parley-recordings"
T = TypeVar("T")


@pytest.fixture(scope="module")
def s3_client(s3: S3Client) -> S3Client:
    """The session's moto S3 server, with the recordings bucket."""
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=BUCKET)
    return s3


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control reads S3 credentials from the standard AWS variables."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


# -- helpers ---------------------------------------------------------------------------------


class Recordings:
    """RecordingService and EgressReportService as one client calls them."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._stub = rec_grpc.RecordingServiceStub(client.channel)
        self._reports = rec_grpc.EgressReportServiceStub(client.channel)

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        try:
            return await method(request, metadata=self.client._metadata)
        except grpc.aio.AioRpcError as error:
            raise ParleyError.from_rpc_error(error) from None

    async def start(self, room: str, mode: rec_pb.RecordingMode.ValueType = SCREEN, **options: Any) -> rec_pb.Recording:
        recording = rec_pb.Recording(mode=mode, options=rec_pb.RecordingOptions(**options))
        return await self._call(
            self._stub.StartRecording, rec_pb.StartRecordingRequest(parent=room, recording=recording)
        )

    async def stop(self, name: str) -> rec_pb.Recording:
        return await self._call(self._stub.StopRecording, rec_pb.StopRecordingRequest(name=name))

    async def get(self, name: str) -> rec_pb.Recording:
        return await self._call(self._stub.GetRecording, rec_pb.GetRecordingRequest(name=name))

    async def listed(self, parent: str, page_size: int = 0) -> list[rec_pb.Recording]:
        found: list[rec_pb.Recording] = []
        request = rec_pb.ListRecordingsRequest(parent=parent, page_size=page_size)
        while True:
            page = await self._call(self._stub.ListRecordings, request)
            found.extend(page.recordings)
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    async def delete(self, name: str) -> None:
        await self._call(self._stub.DeleteRecording, rec_pb.DeleteRecordingRequest(name=name))

    async def link(self, name: str) -> rec_pb.RecordingDownloadLink:
        request = rec_pb.GetRecordingDownloadLinkRequest(name=name)
        return await self._call(self._stub.GetRecordingDownloadLink, request)

    async def notify(self, event: dict[str, Any]) -> list[str]:
        body = struct_pb2.Struct()
        body.update(event)
        answer = await self._call(self._stub.NotifyStorageEvent, rec_pb.NotifyStorageEventRequest(event=body))
        return list(answer.saved)

    async def report(
        self,
        recording: rec_pb.Recording,
        status: egress_res.EgressStatus.ValueType,
        *,
        file: egress_res.FileResult | None = None,
        error: tuple[int, str] | None = None,
        participant_audio: Sequence[egress_res.ParticipantAudio] = (),
    ) -> rec_pb.ReportEgressResponse:
        egress = egress_res.Egress(name=recording.egress, room=recording.name.rsplit("/", 2)[0], status=status)
        if file is not None:
            egress.file.CopyFrom(file)
        egress.participant_audio.extend(participant_audio)
        if error is not None:
            egress.error.code, egress.error.message = error
        egress.update_time.GetCurrentTime()
        return await self._call(self._reports.ReportEgress, rec_pb.ReportEgressRequest(egress=egress))


@dataclass
class Room:
    """A room, its owner, and recording clients of the owner and of an egress node."""

    name: str
    owner: Recordings
    egress: Recordings
    callers: Callers


async def _room(callers: Callers, *, access_level: res.AccessLevel.ValueType = res.ACCESS_LEVEL_TRUSTED) -> Room:
    owner, _ = await callers.user()
    room = await owner.rooms.create(display_name="recorded", access_level=access_level)
    return Room(room.name, Recordings(owner), Recordings(await callers.key("egress:report")), callers)


def _file(key: str, *, location: str = "", content_type: str = "video/mp4", size: int = 1234) -> egress_res.FileResult:
    found = egress_res.FileResult(key=key, location=location or f"file:///recordings/{key}", size_bytes=size)
    found.content_type = content_type
    found.duration.FromSeconds(61)
    return found


@contextlib.asynccontextmanager
async def control(database_url: str, **settings: Any) -> AsyncIterator[Callers]:
    """Another control server on the tests' database, with its own settings."""
    config = ControlSettings(database_url=database_url, token_secret=TOKEN_SECRET, dev_login=True, **settings)
    async with ControlServer(config) as server:
        key, secret = await server.control.create_api_key(None, "recordings bootstrap", ALL_SCOPES)
        anonymous = Client(server.target)
        admin = anonymous.with_bearer(f"{key.id}.{secret}")
        try:
            yield Callers(server, anonymous, admin)
        finally:
            await anonymous.aclose()


def _bearer(client: Client) -> str:
    """The credentials a client calls with, to call another server with them."""
    return dict(client._metadata)["authorization"].removeprefix("Bearer ")


def _code(raised: pytest.ExceptionInfo[ParleyError]) -> grpc.StatusCode:
    return raised.value.code


# -- start and stop --------------------------------------------------------------------------


async def test_the_owner_starts_and_stops_a_recording(callers: Callers, fake_egress: FakeEgress) -> None:
    room = await _room(callers)
    before = len(fake_egress.service.calls)
    recording = await room.owner.start(room.name, language="fr", collect_metadata=True)
    recording_id = recording.name.rsplit("/", 1)[1]
    assert recording.name.startswith(f"{room.name}/recordings/")
    assert recording.state == S.RECORDING_STATE_ACTIVE
    assert recording.egress == f"egresses/{recording_id}"
    assert recording.creator.startswith("users/")
    assert recording.options.language == "fr" and recording.options.collect_metadata
    assert recording.HasField("start_time") and not recording.HasField("stop_time")
    method, request, authorization = fake_egress.service.calls[before]
    assert method == "StartRoomCompositeEgress"
    assert authorization == f"Bearer {SERVICE_API_KEY}"
    assert request.egress_id == recording_id
    assert request.room == recording.name.rsplit("/", 2)[0]
    assert request.options.layout == egress_res.COMPOSITE_LAYOUT_GRID
    assert request.options.preset == egress_res.ENCODING_PRESET_H264_720P_30
    assert not request.options.audio_only
    assert request.output.filename_template == "recordings/{room}/{time}-{id}"

    assert await room.owner.get(recording.name) == recording
    assert [r.name for r in await room.owner.listed(room.name)] == [recording.name]
    assert recording.name in [r.name for r in await room.owner.listed("rooms/-")]

    stopped = await room.owner.stop(recording.name)
    assert stopped.state == S.RECORDING_STATE_STOPPED and stopped.HasField("stop_time")
    assert fake_egress.service.calls[-1][0] == "StopEgress"
    assert fake_egress.service.calls[-1][1].name == recording.egress
    calls = len(fake_egress.service.calls)
    # Stopping again changes nothing and asks the egress nothing.
    assert await room.owner.stop(recording.name) == stopped
    assert len(fake_egress.service.calls) == calls


async def test_a_transcript_is_recorded_audio_only(callers: Callers, fake_egress: FakeEgress) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name, TRANSCRIPT)
    assert recording.mode == TRANSCRIPT
    assert fake_egress.service.calls[-1][1].options.audio_only
    # ...with each participant's own audio beside it, for a transcript with their names.
    assert fake_egress.service.calls[-1][1].options.participant_audio


async def test_members_strangers_and_keys_without_the_scope_are_refused(callers: Callers) -> None:
    room = await _room(callers)
    member, member_name = await callers.user()
    await room.owner.client.accesses.create(room.name, user=member_name, role=res.ROLE_MEMBER)
    stranger, _ = await callers.user()
    administrator, admin_name = await callers.user()
    await room.owner.client.accesses.create(room.name, user=admin_name, role=res.ROLE_ADMINISTRATOR)
    recording = await Recordings(administrator).start(room.name)
    for client in (member, stranger, await callers.key("recordings:read"), await callers.key("rooms:read")):
        with pytest.raises(ParleyError) as raised:
            await Recordings(client).stop(recording.name)
        assert _code(raised) == grpc.StatusCode.PERMISSION_DENIED
    for client in (member, stranger, await callers.key("rooms:read", "rooms:update")):
        with pytest.raises(ParleyError) as raised:
            await Recordings(client).get(recording.name)
        assert _code(raised) == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(ParleyError) as raised:
            await Recordings(client).listed(room.name)
        assert _code(raised) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ParleyError) as raised:
        await Recordings(callers.anonymous).get(recording.name)
    assert _code(raised) == grpc.StatusCode.UNAUTHENTICATED
    # A member sees none of them among "all my rooms' recordings".
    assert await Recordings(member).listed("rooms/-") == []
    # Keys read with recordings:read or recordings:write, and the writer stops.
    assert (await Recordings(await callers.key("recordings:read")).get(recording.name)).name == recording.name
    writer = Recordings(await callers.key("recordings:write"))
    assert recording.name in [r.name for r in await writer.listed("rooms/-")]
    assert (await writer.stop(recording.name)).state == S.RECORDING_STATE_STOPPED


async def test_a_room_records_once_at_a_time(callers: Callers) -> None:
    room = await _room(callers)
    first = await room.owner.start(room.name)
    with pytest.raises(ParleyError) as raised:
        await room.owner.start(room.name, TRANSCRIPT)
    assert _code(raised) == grpc.StatusCode.FAILED_PRECONDITION
    assert "already being recorded" in str(raised.value)
    await room.owner.stop(first.name)
    second = await room.owner.start(room.name)
    assert second.state == S.RECORDING_STATE_ACTIVE
    assert [r.name for r in await room.owner.listed(room.name)] == [second.name, first.name]


async def test_concurrent_starts_only_one_wins(callers: Callers) -> None:
    room = await _room(callers)
    outcomes = await asyncio.gather(*(room.owner.start(room.name) for _ in range(5)), return_exceptions=True)
    won = [o for o in outcomes if isinstance(o, rec_pb.Recording)]
    lost = [o for o in outcomes if isinstance(o, ParleyError)]
    assert len(won) == 1 and len(lost) == 4, outcomes
    assert {e.code for e in lost} == {grpc.StatusCode.FAILED_PRECONDITION}
    assert [r.name for r in await room.owner.listed(room.name)] == [won[0].name]


async def test_an_egress_without_capacity_fails_the_start_and_frees_the_room(
    callers: Callers, fake_egress: FakeEgress
) -> None:
    room = await _room(callers)
    fake_egress.service.behaviour = "full"
    try:
        with pytest.raises(ParleyError) as raised:
            await room.owner.start(room.name)
    finally:
        fake_egress.service.behaviour = "accept"
    assert _code(raised) == grpc.StatusCode.RESOURCE_EXHAUSTED
    [failed] = await room.owner.listed(room.name)
    assert failed.state == S.RECORDING_STATE_FAILED_TO_START
    assert failed.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE


async def test_an_egress_service_that_is_down_fails_the_start(callers: Callers, database_url: str) -> None:
    room = await _room(callers)
    async with FakeEgress() as gone:
        url = gone.url
    async with control(database_url, egress_url=url, service_api_key=SERVICE_API_KEY) as elsewhere:
        owner = Recordings(Client(elsewhere.server.target, bearer=_bearer(room.owner.client)))
        try:
            with pytest.raises(ParleyError) as raised:
                await owner.start(room.name)
        finally:
            await owner.client.aclose()
    assert _code(raised) == grpc.StatusCode.UNAVAILABLE
    [failed] = await room.owner.listed(room.name)
    assert failed.state == S.RECORDING_STATE_FAILED_TO_START
    assert failed.error.code == grpc.StatusCode.UNAVAILABLE.value[0] and failed.error.message
    # The room records again (through a control whose egress is up).
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE


async def test_a_recording_goes_on_without_metadata_when_the_ai_service_is_away(
    callers: Callers, database_url: str, fake_egress: FakeEgress
) -> None:
    room = await _room(callers)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        away = f"grpc://127.0.0.1:{probe.getsockname()[1]}"
    settings = {"egress_url": fake_egress.url, "service_api_key": SERVICE_API_KEY, "ai_url": away}
    async with control(database_url, **settings) as with_ai:
        owner = Recordings(Client(with_ai.server.target, bearer=_bearer(room.owner.client)))
        try:
            recording = await owner.start(room.name, TRANSCRIPT)  # an agent is always wanted here
            assert recording.state == S.RECORDING_STATE_ACTIVE and recording.metadata_agent == ""
            assert (await owner.stop(recording.name)).state == S.RECORDING_STATE_STOPPED
        finally:
            await owner.client.aclose()


async def test_without_an_egress_recording_is_not_configured(callers: Callers, database_url: str) -> None:
    room = await _room(callers)
    async with control(database_url) as plain:
        owner = Recordings(Client(plain.server.target, bearer=_bearer(room.owner.client)))
        try:
            with pytest.raises(ParleyError) as raised:
                await owner.start(room.name)
        finally:
            await owner.client.aclose()
    assert _code(raised) == grpc.StatusCode.FAILED_PRECONDITION
    assert "not configured" in str(raised.value)
    assert await room.owner.listed(room.name) == []


async def test_a_stop_the_egress_refuses_ends_failed_to_stop(callers: Callers, fake_egress: FakeEgress) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    fake_egress.service.stop_error = grpc.StatusCode.UNAVAILABLE
    try:
        stopped = await room.owner.stop(recording.name)
    finally:
        fake_egress.service.stop_error = None
    assert stopped.state == S.RECORDING_STATE_FAILED_TO_STOP
    assert stopped.error.code == grpc.StatusCode.UNAVAILABLE.value[0]
    # The room is free; the egress, if it still runs, learns from its next report to stop.
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_ACTIVE)
    assert answer.state == S.RECORDING_STATE_FAILED_TO_STOP


# -- the egress's reports --------------------------------------------------------------------


async def test_reports_move_a_recording_to_saved(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    key = f"recordings/{recording.name.split('/')[1]}/20261201T101500Z-{recording.name[-32:]}.mp4"
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_ACTIVE, file=_file(key, size=0))
    assert answer.recording == recording.name and answer.state == S.RECORDING_STATE_ACTIVE
    active = await room.owner.get(recording.name)
    assert active.file.location == f"file:///recordings/{key}"
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_ENDING)
    assert answer.state == S.RECORDING_STATE_STOPPED
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key, size=4096))
    assert answer.state == S.RECORDING_STATE_SAVED
    saved = await room.owner.get(recording.name)
    assert saved.HasField("save_time") and saved.HasField("stop_time")
    assert saved.file.size_bytes == 4096 and saved.file.content_type == "video/mp4"
    assert saved.file.duration.seconds == 61
    # Late or repeated reports change nothing; the answer tells the egress where things are.
    for status in (egress_res.EGRESS_STATUS_ACTIVE, egress_res.EGRESS_STATUS_COMPLETE, egress_res.EGRESS_STATUS_FAILED):
        answer = await room.egress.report(recording, status, file=_file(key, size=1))
        assert answer.state == S.RECORDING_STATE_SAVED
    assert await room.owner.get(recording.name) == saved


async def test_a_failed_egress_keeps_its_partial_file_and_frees_the_room(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    key = f"recordings/partial-{recording.name[-32:]}.mp4"
    answer = await room.egress.report(
        recording, egress_res.EGRESS_STATUS_FAILED, file=_file(key), error=(13, "the encoder crashed")
    )
    assert answer.state == S.RECORDING_STATE_FAILED
    failed = await room.owner.get(recording.name)
    assert failed.error.code == 13 and failed.error.message == "the encoder crashed"
    assert failed.file.location.endswith(key)
    link = await room.owner.link(recording.name)
    assert verify_file_token(FILES_SECRET, link.url.removeprefix("/v1/files/")).path == key
    # An ACTIVE report sent before the failure, arriving after it, changes nothing.
    assert (await room.egress.report(recording, egress_res.EGRESS_STATUS_ACTIVE)).state == S.RECORDING_STATE_FAILED
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE


async def test_an_aborted_egress_aborts_the_recording(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_ABORTED)
    assert answer.state == S.RECORDING_STATE_ABORTED
    aborted = await room.owner.get(recording.name)
    assert not aborted.HasField("file")
    with pytest.raises(ParleyError) as raised:
        await room.owner.link(recording.name)
    assert _code(raised) == grpc.StatusCode.FAILED_PRECONDITION
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE


async def test_reports_need_the_egress_report_scope(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    for client in (room.owner.client, await callers.key("recordings:write", "egress:manage")):
        with pytest.raises(ParleyError) as raised:
            await Recordings(client).report(recording, egress_res.EGRESS_STATUS_ABORTED)
        assert _code(raised) == grpc.StatusCode.PERMISSION_DENIED
    assert (await room.owner.get(recording.name)).state == S.RECORDING_STATE_ACTIVE
    # An egress that records no recording is told so (it stops).
    orphan = rec_pb.Recording(name=f"{room.name}/recordings/{'0' * 32}", egress=f"egresses/{'0' * 32}")
    answer = await room.egress.report(orphan, egress_res.EGRESS_STATUS_ACTIVE)
    assert answer.recording == "" and answer.state == S.RECORDING_STATE_UNSPECIFIED


async def test_a_silent_egress_fails_its_recording(callers: Callers, database_url: str) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    recordings = callers.server.control.recordings
    created = datetime.now(UTC)
    await recordings.fail_silent(now=created)  # (other tests' recordings may be old enough)
    assert (await room.owner.get(recording.name)).state != S.RECORDING_STATE_FAILED
    # With a tiny report timeout, the server's reaper fails it on its own.
    async with control(database_url, recording_report_timeout=timedelta(milliseconds=200)):
        deadline = time.monotonic() + 60
        while (found := await room.owner.get(recording.name)).state != S.RECORDING_STATE_FAILED:
            assert time.monotonic() < deadline, found
            await asyncio.sleep(0.05)
    assert found.error.message == "the egress stopped reporting"
    assert (await room.owner.start(room.name)).state == S.RECORDING_STATE_ACTIVE


async def test_the_reaper_spares_recordings_that_report(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    await room.egress.report(recording, egress_res.EGRESS_STATUS_ACTIVE)
    recordings = callers.server.control.recordings
    timeout = callers.server.settings.recording_report_timeout
    assert await recordings.fail_silent(now=datetime.now(UTC) + timeout / 2) == 0
    assert (await room.owner.get(recording.name)).state == S.RECORDING_STATE_ACTIVE
    # A stopped recording whose egress is finishing its file is waited for, too.
    await room.owner.stop(recording.name)
    assert await recordings.fail_silent(now=datetime.now(UTC) + timeout * 2) >= 1
    assert (await room.owner.get(recording.name)).state == S.RECORDING_STATE_FAILED


# -- the storage hook ------------------------------------------------------------------------


def _s3_event(key: str, *, bucket: str = BUCKET, name: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventName": name,
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="/"), "size": 4096, **obj}},
            }
        ]
    }


def _minio_event(key: str) -> dict[str, Any]:
    event = _s3_event(key, name="s3:ObjectCreated:Put", contentType="audio/ogg")
    return {"EventName": "s3:ObjectCreated:Put", "Key": f"{BUCKET}/{key}", **event}


async def test_the_storage_hook_saves_stored_recordings_and_ignores_the_rest(
    callers: Callers, database_url: str, fake_egress: FakeEgress, s3_endpoint: str, aws_credentials: None
) -> None:
    room = await _room(callers)
    settings: dict[str, Any] = {
        "egress_url": fake_egress.url,
        "service_api_key": SERVICE_API_KEY,
        "recordings_bucket": BUCKET,
        "s3_endpoint": s3_endpoint,
        "recording_storage_events": True,
    }
    async with control(database_url, **settings) as stack:
        owner = Recordings(Client(stack.server.target, bearer=_bearer(room.owner.client)))
        egress = Recordings(await stack.key("egress:report"))
        hook = Recordings(await stack.key("storage:notify"))
        try:
            recording = await owner.start(room.name)
            key = f"recordings/{recording.name.split('/')[1]}/with space+plus-{recording.name[-32:]}.mp4"
            file = _file(key, location=f"s3://{BUCKET}/{key}")
            await egress.report(recording, egress_res.EGRESS_STATUS_ACTIVE, file=file)
            answer = await egress.report(recording, egress_res.EGRESS_STATUS_COMPLETE, file=file)
            # Complete, but not SAVED until the storage says the file is there.
            assert answer.state == S.RECORDING_STATE_STOPPED
            waiting = await owner.get(recording.name)

            with pytest.raises(ParleyError) as raised:
                await Recordings(stack.anonymous.with_bearer("pk_nobody.secret")).notify(_s3_event(key))
            assert _code(raised) == grpc.StatusCode.UNAUTHENTICATED
            for client in (await stack.key("recordings:write", "egress:report"), owner.client):
                with pytest.raises(ParleyError) as raised:
                    await Recordings(client).notify(_s3_event(key))
                assert _code(raised) == grpc.StatusCode.PERMISSION_DENIED
            malformed: list[tuple[dict[str, Any], set[str]]] = [
                ({"Records": "nope"}, {"event.Records"}),
                ({"Hello": 1}, {"event.Records"}),
                (
                    {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {}, "object": {"size": "x"}}}]},
                    {
                        "event.Records[0].s3.bucket.name",
                        "event.Records[0].s3.object.key",
                        "event.Records[0].s3.object.size",
                    },
                ),
                ({"Records": [7]}, {"event.Records[0]"}),
            ]
            for event, fields in malformed:
                with pytest.raises(ParleyError) as raised:
                    await hook.notify(event)
                assert _code(raised) == grpc.StatusCode.INVALID_ARGUMENT
                assert {v.field for v in raised.value.field_violations} == fields
            ignored = [
                _s3_event(key, bucket="another-bucket"),
                _s3_event(key, contentType="text/html"),
                _s3_event(key, name="ObjectRemoved:Delete"),
                _s3_event(key + ".part"),
                _s3_event(key.replace(" ", "%20")),
                {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": BUCKET},
            ]
            for event in ignored:
                assert await hook.notify(event) == []
            assert await owner.get(recording.name) == waiting

            assert await hook.notify(_s3_event(key, contentType="video/mp4")) == [recording.name]
            saved = await owner.get(recording.name)
            assert saved.state == S.RECORDING_STATE_SAVED and saved.HasField("save_time")
            # Sent again: nothing changes.
            assert await hook.notify(_s3_event(key)) == []
            assert await owner.get(recording.name) == saved

            # MinIO's notification, arriving before the egress says it is complete.
            second = await owner.start(room.name, TRANSCRIPT)
            key2 = f"recordings/{second.name[-32:]}.ogg"
            file2 = _file(key2, location=f"s3://{BUCKET}/{key2}", content_type="audio/ogg")
            await egress.report(second, egress_res.EGRESS_STATUS_ACTIVE, file=file2)
            assert await hook.notify(_minio_event(key2)) == []
            assert (await owner.get(second.name)).state == S.RECORDING_STATE_ACTIVE
            answer = await egress.report(second, egress_res.EGRESS_STATUS_COMPLETE, file=file2)
            assert answer.state == S.RECORDING_STATE_SAVED
        finally:
            await owner.client.aclose()


# -- downloading and deleting ----------------------------------------------------------------


async def _saved(room: Room, key: str, **file: Any) -> rec_pb.Recording:
    recording = await room.owner.start(room.name)
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key, **file))
    assert answer.state == S.RECORDING_STATE_SAVED
    return await room.owner.get(recording.name)


async def test_a_saved_local_file_downloads_through_a_signed_gateway_path(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name)
    with pytest.raises(ParleyError) as raised:
        await room.owner.link(recording.name)
    assert _code(raised) == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(ParleyError) as raised:
        await room.owner.delete(recording.name)
    assert _code(raised) == grpc.StatusCode.FAILED_PRECONDITION
    await room.owner.stop(recording.name)

    folder = callers.server.settings.recordings_dir
    assert folder is not None
    key = f"recordings/{recording.name[-32:]}.mp4"
    (folder / key).parent.mkdir(parents=True, exist_ok=True)
    (folder / key).write_bytes(b"mp4 bytes")
    answer = await room.egress.report(recording, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key))
    assert answer.state == S.RECORDING_STATE_SAVED
    link = await room.owner.link(recording.name)
    assert link.url.startswith("/v1/files/")
    claims = verify_file_token(FILES_SECRET, link.url.removeprefix("/v1/files/"))
    assert claims.path == key and claims.content_type == "video/mp4"
    assert claims.filename == link.filename and link.filename.endswith(".mp4")
    assert link.file.size_bytes == 1234
    remaining = link.expire_time.ToDatetime(tzinfo=UTC) - datetime.now(UTC)
    assert timedelta(0) < remaining <= callers.server.settings.download_link_ttl
    with pytest.raises(ValueError, match="invalid download token"):
        verify_file_token("another-secret-" + "z" * 32, link.url.removeprefix("/v1/files/"))

    await room.owner.delete(recording.name)
    assert not (folder / key).exists()
    with pytest.raises(ParleyError) as raised:
        await room.owner.get(recording.name)
    assert _code(raised) == grpc.StatusCode.NOT_FOUND
    # A recording whose file is already gone is deleted all the same.
    other = await _saved(room, f"recordings/missing-{recording.name[-32:]}.mp4")
    await room.owner.delete(other.name)
    assert await room.owner.listed(room.name) == []


async def test_deleting_a_transcript_recording_deletes_each_participants_audio(callers: Callers) -> None:
    room = await _room(callers)
    recording = await room.owner.start(room.name, TRANSCRIPT)
    await room.owner.stop(recording.name)
    folder = callers.server.settings.recordings_dir
    assert folder is not None
    key = f"recordings/{recording.name[-32:]}.ogg"
    tracks = [f"recordings/{recording.name[-32:]}.tracks/TR_{n}.ogg" for n in ("a", "b")]
    for path in (key, *tracks):
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(b"ogg bytes")
    heard = [
        egress_res.ParticipantAudio(participant_identity=who, participant_name=who.title(), file=_file(track))
        for who, track in zip(("ann", "bob"), tracks, strict=True)
    ]
    answer = await room.egress.report(
        recording, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key, content_type="audio/ogg"), participant_audio=heard
    )
    assert answer.state == S.RECORDING_STATE_SAVED
    await room.owner.delete(recording.name)
    assert await room.owner.listed(room.name) == []
    assert not any((folder / path).exists() for path in (key, *tracks))


async def test_a_saved_s3_file_downloads_with_a_presigned_url(
    callers: Callers,
    database_url: str,
    fake_egress: FakeEgress,
    s3_endpoint: str,
    s3_client: S3Client,
    aws_credentials: None,
) -> None:
    room = await _room(callers)
    settings: dict[str, Any] = {
        "egress_url": fake_egress.url,
        "service_api_key": SERVICE_API_KEY,
        "recordings_bucket": BUCKET,
        "s3_endpoint": s3_endpoint,
    }
    async with control(database_url, **settings) as stack:
        owner = Recordings(Client(stack.server.target, bearer=_bearer(room.owner.client)))
        egress = Recordings(await stack.key("egress:report"))
        try:
            recording = await owner.start(room.name)
            key = f"recordings/{recording.name[-32:]}.mp4"
            s3_client.put_object(Bucket=BUCKET, Key=key, Body=b"the whole meeting", ContentType="video/mp4")
            file = _file(key, location=f"s3://{BUCKET}/{key}", size=17)
            assert (await egress.report(recording, egress_res.EGRESS_STATUS_COMPLETE, file=file)).state == (
                S.RECORDING_STATE_SAVED
            )
            link = await owner.link(recording.name)
            assert link.url.startswith(s3_endpoint)
            async with httpx.AsyncClient() as http:
                response = await http.get(link.url)
            assert response.status_code == 200 and response.content == b"the whole meeting"
            await owner.delete(recording.name)
            assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount") == 0
        finally:
            await owner.client.aclose()


# -- transcribing saved recordings (the AI service itself: tests/egress/test_record_transcribe.py)


async def _eventually(read: Callable[[], Awaitable[T]], done: Callable[[T], bool], within: float = 60.0) -> T:
    deadline = time.monotonic() + within
    while True:
        value = await read()
        if done(value):
            return value
        assert time.monotonic() < deadline, value
        await asyncio.sleep(0.2)


async def test_without_an_ai_service_a_saved_transcript_stays_saved(callers: Callers) -> None:
    assert not callers.server.settings.ai_url and callers.server.recording_followups is None
    room = await _room(callers)
    recording = await room.owner.start(room.name, TRANSCRIPT)
    key = f"recordings/{recording.name[-32:]}.ogg"
    answer = await room.egress.report(
        recording, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key, content_type="audio/ogg")
    )
    assert answer.state == S.RECORDING_STATE_SAVED
    await asyncio.sleep(2 * SCAN_INTERVAL_SECONDS)  # what a follow-up worker would take to claim it
    saved = await room.owner.get(recording.name)
    assert saved.state == S.RECORDING_STATE_SAVED
    assert not saved.transcription and not saved.summary and not saved.HasField("error")
    assert (await room.owner.link(recording.name)).url.startswith("/v1/files/")


async def test_an_absent_ai_service_is_retried_and_an_unreadable_file_fails_the_follow_up_only(
    callers: Callers, database_url: str, fake_egress: FakeEgress, tmp_path: Path
) -> None:
    room = await _room(callers)
    with socket.socket() as probe:  # a port nothing listens on: the AI service is away
        probe.bind(("127.0.0.1", 0))
        away = f"grpc://127.0.0.1:{probe.getsockname()[1]}"
    settings: dict[str, Any] = {
        "egress_url": fake_egress.url,
        "service_api_key": SERVICE_API_KEY,
        "ai_url": away,
        "recordings_dir": tmp_path,
        "files_secret": FILES_SECRET,
    }
    async with control(database_url, **settings) as stack:
        worker = stack.server.recording_followups
        assert worker is not None
        owner = Recordings(Client(stack.server.target, bearer=_bearer(room.owner.client)))
        egress = Recordings(await stack.key("egress:report"))
        try:
            # In S3: the AI service would read the object itself, but it cannot be reached.
            in_s3 = await owner.start(room.name, TRANSCRIPT)
            key = f"recordings/{in_s3.name[-32:]}.ogg"
            file = _file(key, location=f"s3://{BUCKET}/{key}", content_type="audio/ogg")
            assert (await egress.report(in_s3, egress_res.EGRESS_STATUS_COMPLETE, file=file)).state == (
                S.RECORDING_STATE_SAVED
            )
            recording_id = in_s3.name[-32:]
            await _eventually(lambda: asyncio.sleep(0, worker._failures.get(recording_id, 0)), lambda n: n >= 1)
            retried = await owner.get(in_s3.name)
            assert retried.state == S.RECORDING_STATE_SAVED and not retried.HasField("error")
            assert not retried.transcription

            # In the folder, with its file gone: nothing to upload, the follow-up fails at once.
            local = await owner.start(room.name, SCREEN, transcribe=True)
            key = f"recordings/{local.name[-32:]}.mp4"
            assert (await egress.report(local, egress_res.EGRESS_STATUS_COMPLETE, file=_file(key))).state == (
                S.RECORDING_STATE_SAVED
            )
            failed = await _eventually(
                lambda: owner.get(local.name), lambda r: r.state == S.RECORDING_STATE_NOTIFICATION_FAILED
            )
            assert failed.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
            assert "missing" in failed.error.message
            # The recording is kept: it still downloads, and deletes.
            assert (await owner.link(local.name)).url.startswith("/v1/files/")
            await owner.delete(local.name)
            await owner.delete(in_s3.name)
        finally:
            await owner.client.aclose()
