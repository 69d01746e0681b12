"""Two SDK clients meet through the SFU: what one publishes, the other decodes (colours and
tone checked), and mute, unpublish, data, leave and rejoin are seen by the other side."""

from __future__ import annotations

import asyncio
import uuid

import grpc

from parley.control.v1 import resources_pb2 as control_res
from parley.room import RemoteTrack, Room
from parley.sfu.v1 import signal_service_pb2 as sig
from sfu import SfuServer

from .conftest import COLOURS, ColourTrack, Mint, ToneTrack, dominant_frequency, mean_colour, nearest_colour


def _room() -> str:
    return f"meet-{uuid.uuid4().hex[:8]}"


async def test_video_and_audio_arrive_undamaged(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id))
    try:
        video, audio = ColourTrack(), ToneTrack(frequency=440.0)
        camera = await alice.publish(video, source="camera", name="cam")
        microphone = await alice.publish(audio, source="microphone")
        assert camera.sid.startswith("TR_") and camera.kind == 2

        subscribed: dict[str, RemoteTrack] = {}
        while len(subscribed) < 2:
            event = await bob.wait_for("track_subscribed", within=30)
            assert event.track is not None and event.participant is not None
            assert event.participant.identity == "alice"
            subscribed[event.track.sid] = event.track
        assert set(subscribed) == {camera.sid, microphone.sid}

        remote_video = subscribed[camera.sid].track
        assert remote_video is not None
        seen: set[int] = set()
        for _ in range(200):
            frame = await asyncio.wait_for(remote_video.recv(), 10)
            seen.add(nearest_colour(mean_colour(frame)))
            rgb = mean_colour(frame)
            assert min(sum((a - b) ** 2 for a, b in zip(rgb, c, strict=True)) for c in COLOURS) < 40**2, rgb
            if len(seen) == len(COLOURS):
                break
        assert seen == set(range(len(COLOURS))), seen

        remote_audio = subscribed[microphone.sid].track
        assert remote_audio is not None
        frames = [await asyncio.wait_for(remote_audio.recv(), 10) for _ in range(100)]
        assert abs(dominant_frequency(frames[50:]) - 440.0) < 10
    finally:
        await alice.close()
        await bob.close()


async def test_mute_unpublish_data_leave_and_rejoin_are_seen(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id))
    try:
        joined = await alice.wait_for("participant_joined")
        assert joined.participant is not None and joined.participant.identity == "bob"
        assert [p for p in bob.participants] == ["alice"]

        microphone = await alice.publish(ToneTrack(), source="microphone")
        await bob.wait_for("track_subscribed", lambda e: e.track is not None and e.track.sid == microphone.sid)
        screen = await alice.publish(ColourTrack(), source="screen_share", name="slides")
        shared = await bob.wait_for("track_subscribed", lambda e: e.track is not None and e.track.sid == screen.sid)
        assert shared.track is not None and shared.track.info.source == control_res.TRACK_SOURCE_SCREEN_SHARE
        assert shared.track.track is not None
        assert mean_colour(await asyncio.wait_for(shared.track.track.recv(), 10))  # decodes

        await alice.set_muted(microphone.sid, True)
        muted = await bob.wait_for("track_muted")
        assert muted.track is not None and muted.track.muted
        await alice.set_muted(microphone.sid, False)
        unmuted = await bob.wait_for("track_muted")
        assert unmuted.track is not None and not unmuted.track.muted

        await alice.send_data(b"hello bob", topic="chat")
        message = await bob.wait_for("data")
        assert message.data is not None and message.data.payload == b"hello bob"
        assert message.data.topic == "chat" and message.data.participant_identity == "alice"

        await alice.update_metadata(attributes={"hand_raised": "true"})
        raised = await bob.wait_for("participant_updated")
        assert raised.participant is not None and raised.participant.info.attributes["hand_raised"] == "true"

        await alice.unpublish(microphone.sid)
        gone = await bob.wait_for("track_unpublished")
        assert gone.track is not None and gone.track.sid == microphone.sid
        assert list(bob.participants["alice"].tracks) == [screen.sid]

        await alice.close()
        left = await bob.wait_for("participant_left")
        assert left.participant is not None and left.participant.identity == "alice"

        alice = await Room.connect(sfu.target, token("alice", room_id))
        back = await bob.wait_for("participant_joined")
        assert back.participant is not None and back.participant.identity == "alice"
    finally:
        await alice.close()
        await bob.close()


async def test_speakers_are_detected_from_audio_levels(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id))
    try:
        microphone = await alice.publish(ToneTrack(amplitude=0.5), source="microphone")
        speaking = await bob.wait_for("speakers_changed", lambda e: bool(e.speakers), within=30)
        assert [s.identity for s in speaking.speakers] == ["alice"] and speaking.speakers[0].level > 0.5
        await alice.set_muted(microphone.sid, True)
        await bob.wait_for("speakers_changed", lambda e: not e.speakers, within=10)
    finally:
        await alice.close()
        await bob.close()


async def test_connection_quality_is_reported(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id))
    try:
        await alice.publish(ToneTrack(), source="microphone")
        event = await bob.wait_for("connection_quality", lambda e: any(q.identity == "alice" for q in e.qualities))
        quality = next(q.quality for q in event.qualities if q.identity == "alice")
        assert quality == sig.CONNECTION_QUALITY_EXCELLENT  # loopback loses nothing
    finally:
        await alice.close()
        await bob.close()


async def test_manual_subscribers_choose_their_tracks(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    bob = await Room.connect(sfu.target, token("bob", room_id), auto_subscribe=False)
    try:
        camera = await alice.publish(ColourTrack(), source="camera")
        microphone = await alice.publish(ToneTrack(), source="microphone")
        await bob.wait_for("track_published", lambda e: e.track is not None and e.track.sid == microphone.sid)
        subscriptions = sfu.rooms.rooms[room_id].sessions["bob"].subscriber.subscriptions
        assert not subscriptions

        await bob.subscribe(["TR_nothing", camera.sid])  # all or nothing
        refused = await bob.wait_for("error")
        assert refused.error is not None and refused.error.code == grpc.StatusCode.NOT_FOUND
        assert "TR_nothing" in str(refused.error) and not subscriptions

        await bob.subscribe([camera.sid])
        got = await bob.wait_for("track_subscribed")
        assert got.track is not None and got.track.sid == camera.sid and got.track.track is not None
        assert mean_colour(await asyncio.wait_for(got.track.track.recv(), 10))  # decodes

        await bob.subscribe([camera.sid], subscribe=False)
        await bob.subscribe([microphone.sid])
        got = await bob.wait_for("track_subscribed")
        assert got.track is not None and got.track.sid == microphone.sid
        assert list(subscriptions) == [microphone.sid]
    finally:
        await alice.close()
        await bob.close()


async def test_everyone_sees_when_a_recorder_is_in_the_meeting(sfu: SfuServer, token: Mint) -> None:
    room_id = _room()
    alice = await Room.connect(sfu.target, token("alice", room_id))
    recorder: Room | None = None
    bob: Room | None = None
    try:
        assert not alice.recording
        recorder = await Room.connect(
            sfu.target, token("recorder", room_id, hidden=True, recorder=True, can_publish=False)
        )
        assert recorder.recording
        updated = await alice.wait_for("room_updated")
        assert updated.participant is None and alice.recording and alice.info.participant_count == 2

        bob = await Room.connect(sfu.target, token("bob", room_id))
        assert bob.recording and bob.info.recording  # from joined
        assert "recorder" not in bob.participants and "recorder" not in alice.participants
        joined = await alice.wait_for("participant_joined")
        assert joined.participant is not None and joined.participant.identity == "bob"

        await recorder.close()
        await alice.wait_for("room_updated")
        await bob.wait_for("room_updated")
        assert not alice.recording and not bob.recording
        assert not sfu.rooms.rooms[room_id].info().recording
    finally:
        for room in (alice, recorder, bob):
            if room is not None:
                await room.close()
