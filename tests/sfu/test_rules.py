"""Grants from join tokens, room admin, and bad input: refused requests answer that peer only,
the room and the others go on, and nothing is left running."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from parley import ParleyError, PermissionDenied, ResourceExhausted, VideoGrants, create_join_token
from parley.control.v1 import resources_pb2 as control_res
from parley.room import Room
from parley.sfu.v1 import resources_pb2 as res
from parley.sfu.v1 import signal_service_pb2 as sig
from parley.sfu.v1 import signal_service_pb2_grpc as sig_grpc
from sfu import SfuServer, SfuSettings

from ..conftest import TOKEN_SECRET
from .conftest import KEY_ID, ColourTrack, Mint, ToneTrack


def _room() -> str:
    return f"rules-{uuid.uuid4().hex[:8]}"


def _details(status: status_pb2.Status) -> tuple[str, list[str]]:
    """An error status's ErrorInfo reason and the fields its BadRequest names."""
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    for packed in status.details:
        _ = packed.Unpack(info) or packed.Unpack(bad)
    assert info.domain == "parley.dev"
    return info.reason, [v.field for v in bad.field_violations]


async def test_publishing_needs_the_grant_and_an_allowed_source(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    viewer = await Room.connect(sfu.target, token("viewer", room_id, can_publish=False))
    camera_only = await Room.connect(sfu.target, token("cam", room_id, can_publish_sources=("camera",)))
    try:
        with pytest.raises(PermissionDenied):
            await viewer.publish(ToneTrack(), source="microphone")
        with pytest.raises(PermissionDenied) as wrong_source:
            await camera_only.publish(ToneTrack(), source="microphone")
        assert "microphone" in str(wrong_source.value)
        published = await camera_only.publish(ColourTrack(), source="camera")
        seen = await viewer.wait_for("track_subscribed")
        assert seen.track is not None and seen.track.sid == published.sid
    finally:
        await viewer.close()
        await camera_only.close()


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (
            lambda room: create_join_token(
                key_id="other", secret=TOKEN_SECRET, identity="x", grants=VideoGrants(room=room)
            )[0],
            "UNAUTHENTICATED",
        ),
        (
            lambda room: create_join_token(key_id=KEY_ID, secret="s" * 40, identity="x", grants=VideoGrants(room=room))[
                0
            ],
            "UNAUTHENTICATED",
        ),
        (
            lambda room: create_join_token(
                key_id=KEY_ID,
                secret=TOKEN_SECRET,
                identity="x",
                grants=VideoGrants(room=room),
                ttl=timedelta(seconds=-60),
            )[0],
            "UNAUTHENTICATED",
        ),
        (
            lambda room: create_join_token(
                key_id=KEY_ID, secret=TOKEN_SECRET, identity="x", grants=VideoGrants(room=room, room_join=False)
            )[0],
            "PERMISSION_DENIED",
        ),
        (lambda room: "not-a-jwt", "UNAUTHENTICATED"),
        (lambda room: "", "INVALID_ARGUMENT"),
    ],
    ids=["unknown-key", "wrong-secret", "expired", "no-room-join", "malformed", "empty"],
)
async def test_bad_tokens_are_refused(sfu: SfuServer, make: object, code: str) -> None:
    assert callable(make)
    with pytest.raises(ParleyError) as refused:
        await Room.connect(sfu.target, make(_room()))
    assert refused.value.code.name == code
    assert type(refused.value).__name__ == code.title().replace("_", "")  # parley.Unauthenticated, ...


async def test_hidden_recorders_are_invisible_and_receive_everything(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    recorder = await Room.connect(
        sfu.target, token("recorder", room_id, hidden=True, recorder=True, can_publish=False, can_subscribe=False)
    )
    bob = await Room.connect(sfu.target, token("bob", room_id))
    try:
        camera = await alice.publish(ColourTrack(), source="camera")
        got = await recorder.wait_for("track_subscribed")
        assert got.track is not None and got.track.sid == camera.sid
        assert set(recorder.participants) == {"alice", "bob"}
        assert "recorder" not in alice.participants and "recorder" not in bob.participants
        await bob.wait_for("track_subscribed")
        joined = [e async for e in _drain(alice) if e.type == "participant_joined"]
        assert [e.participant.identity for e in joined if e.participant] == ["bob"]
    finally:
        for room in (alice, recorder, bob):
            await room.close()


async def _drain(room: Room):  # type: ignore[no-untyped-def]
    while not room._events.empty():
        yield room._events.get_nowait()


async def test_the_same_identity_joining_again_replaces_the_old_session(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    first = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id))
    old_track = await first.publish(ToneTrack(), source="microphone")
    await bob.wait_for("track_subscribed")
    second = await Room.connect(sfu.target, token("alice", room_id))
    try:
        left = await first.wait_for("left")
        assert left.reason == res.LEAVE_REASON_DUPLICATE_IDENTITY
        assert sorted(sfu.rooms.rooms[room_id].sessions) == ["alice", "bob"]
        gone = await bob.wait_for("track_unpublished")  # the old session's tracks go with it
        assert gone.track is not None and gone.track.sid == old_track.sid
        await second.ping(42)
    finally:
        for room in (first, second, bob):
            await room.close()


async def test_refused_metadata_updates_change_nothing(sfu: SfuServer, token: Mint) -> None:
    alice = await Room.connect(sfu.target, token("alice", _room()))
    try:
        await alice.update_metadata(attributes={"hand_raised": "true"})
        with pytest.raises(ResourceExhausted):
            await alice.update_metadata(name="Mallory", attributes={f"k{i}": "v" for i in range(32)})
        assert dict(alice.local.attributes) == {"hand_raised": "true"} and alice.local.name == "Alice"
    finally:
        await alice.close()


async def test_room_admins_remove_and_mute(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    microphone = await alice.publish(ToneTrack(), source="microphone")
    channel = grpc.aio.insecure_channel(sfu.target)
    admin = sig_grpc.RoomAdminServiceStub(channel)
    bearer = [("authorization", f"Bearer {token('admin', room_id, room_admin=True)}")]
    try:
        with pytest.raises(grpc.aio.AioRpcError) as anonymous:
            await admin.ListParticipants(sig.ListParticipantsRequest(room=room_id))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        not_admin = [("authorization", f"Bearer {token('eve', room_id)}")]
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await admin.ListParticipants(sig.ListParticipantsRequest(room=room_id), metadata=not_admin)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        other_room = [("authorization", f"Bearer {token('admin', _room(), room_admin=True)}")]
        with pytest.raises(grpc.aio.AioRpcError) as wrong_room:
            await admin.ListParticipants(sig.ListParticipantsRequest(room=room_id), metadata=other_room)
        assert wrong_room.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.aio.AioRpcError) as invalid:
            await admin.ListParticipants(sig.ListParticipantsRequest(room="Not A Room"), metadata=bearer)
        assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # Room admin answers google.rpc.Status with an ErrorInfo, as every Parley service does.
        for refused, reason in ((anonymous, "UNAUTHENTICATED"), (denied, "PERMISSION_DENIED")):
            status = rpc_status.from_call(refused.value)  # type: ignore[arg-type]
            assert status is not None and _details(status) == (reason, [])
        invalid_status = rpc_status.from_call(invalid.value)  # type: ignore[arg-type]
        assert invalid_status is not None and _details(invalid_status) == ("INVALID_ARGUMENT", ["room"])

        listed = await admin.ListParticipants(sig.ListParticipantsRequest(room=room_id), metadata=bearer)
        assert [p.identity for p in listed.participants] == ["alice"]
        muted = await admin.MutePublishedTrack(
            sig.MutePublishedTrackRequest(room=room_id, identity="alice", track_sid=microphone.sid, muted=True),
            metadata=bearer,
        )
        assert muted.muted
        seen = await alice.wait_for("track_muted")
        assert seen.local_track is not None and seen.local_track.sid == microphone.sid and seen.local_track.muted
        await admin.RemoveParticipant(sig.RemoveParticipantRequest(room=room_id, identity="alice"), metadata=bearer)
        left = await alice.wait_for("left")
        assert left.reason == res.LEAVE_REASON_REMOVED
    finally:
        await channel.close()
        await alice.close()


async def test_bad_signal_requests_fail_that_peer_only(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    bob = await Room.connect(sfu.target, token("bob", room_id))
    tasks_before = len(asyncio.all_tasks())
    channel = grpc.aio.insecure_channel(sfu.target)
    call = sig_grpc.SignalServiceStub(channel).Connect()
    try:
        await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=token("mallory", room_id))))

        async def read() -> sig.ConnectResponse:
            response = await asyncio.wait_for(call.read(), 10)
            assert isinstance(response, sig.ConnectResponse), response
            return response

        assert (await read()).WhichOneof("message") == "joined"

        async def error_for(request: sig.ConnectRequest) -> sig.SignalError:
            await call.write(request)
            while (response := await read()).WhichOneof("message") != "error":
                pass
            return response.error

        for sdp_text in ("v=0\r\nnonsense", "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:x"):
            bad_sdp = await error_for(sig.ConnectRequest(request_id=1, offer=sig.SessionDescription(sdp=sdp_text)))
            assert bad_sdp.request_id == 1 and bad_sdp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert _details(bad_sdp.status) == ("INVALID_ARGUMENT", ["offer.sdp"])
        unknown = await error_for(sig.ConnectRequest(request_id=2))
        assert unknown.request_id == 2 and unknown.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        huge = await error_for(sig.ConnectRequest(request_id=3, data=res.DataPacket(payload=b"x" * 20000)))
        assert huge.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert b"data.payload" in huge.status.SerializeToString()
        stray_answer = await error_for(sig.ConnectRequest(request_id=4, answer=sig.SessionDescription(sdp="v=0")))
        assert stray_answer.status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        assert _details(stray_answer.status) == ("FAILED_PRECONDITION", [])
        for i in range(300):  # a flood: refused past the rate limit, the session survives
            await call.write(sig.ConnectRequest(request_id=100 + i, ping=sig.Ping(timestamp=i)))
        codes = set()
        pongs = 0
        for _ in range(300):
            response = await read()
            kind = response.WhichOneof("message")
            if kind == "error":
                codes.add(response.error.status.code)
            pongs += kind == "pong"
        assert codes == {grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]} and pongs >= 50

        # Mallory vanishes mid-negotiation: the stream is cut, not closed.
        await call.write(
            sig.ConnectRequest(
                publish_track=sig.PublishTrackRequest(
                    cid="c1", kind=res.TRACK_KIND_AUDIO, source=control_res.TRACK_SOURCE_MICROPHONE
                )
            )
        )
        call.cancel()
        left = await bob.wait_for(
            "participant_left", lambda e: e.participant is not None and e.participant.identity == "mallory"
        )
        assert left.participant is not None
        assert list(sfu.rooms.rooms[room_id].sessions) == ["bob"]
        await bob.ping(1)
    finally:
        await channel.close()
    for _ in range(50):
        if len(asyncio.all_tasks()) <= tasks_before:
            break
        await asyncio.sleep(0.1)
    assert len(asyncio.all_tasks()) <= tasks_before
    await bob.close()


async def test_full_rooms_refuse_and_empty_rooms_close(token: Mint) -> None:
    settings = SfuSettings(
        token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0", max_participants=1, empty_timeout=0.5
    )
    async with SfuServer(settings) as small:
        first = await Room.connect(small.target, token("first", "small-room"))
        with pytest.raises(ResourceExhausted):
            await Room.connect(small.target, token("second", "small-room"))
        meeting = small.rooms.rooms["small-room"].sid
        await first.close()
        for _ in range(50):
            if "small-room" not in small.rooms.rooms:
                break
            await asyncio.sleep(0.1)
        assert "small-room" not in small.rooms.rooms
        again = await Room.connect(small.target, token("second", "small-room"))
        assert again.info.sid != meeting  # a new meeting of the same room
        await again.close()


async def test_a_client_that_never_answers_is_ended(token: Mint) -> None:
    settings = SfuSettings(token_secrets={KEY_ID: TOKEN_SECRET}, grpc_address="127.0.0.1:0", answer_timeout=1.0)
    async with SfuServer(settings) as node:
        alice = await Room.connect(node.target, token("alice", "answers"))
        channel = grpc.aio.insecure_channel(node.target)
        call = sig_grpc.SignalServiceStub(channel).Connect()
        try:
            await call.write(sig.ConnectRequest(join=sig.JoinRequest(token=token("silent", "answers"))))
            await alice.publish(ToneTrack(), source="microphone")
            seen = []
            while (response := await asyncio.wait_for(call.read(), 10)) is not grpc.aio.EOF:
                assert isinstance(response, sig.ConnectResponse)
                seen.append(response.WhichOneof("message"))
                if seen[-1] == "left":
                    assert response.left.reason == res.LEAVE_REASON_CONNECTION_FAILED
            assert "offer" in seen and seen[-1] == "left"  # offered, never answered, ended
            await alice.wait_for("participant_left")
        finally:
            await channel.close()
            await alice.close()
