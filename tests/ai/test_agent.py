"""The metadata agent: streaming voice activity and the timeline's bookkeeping fed directly
(decoded frames, room news), then the agent itself in a real meeting: an SFU node, control and
the egress service (``tests/egress/stack.py``), SDK bots speaking espeak-ng sentences, a real
recording whose end sends the agent away, and the agent on the tests' Ray cluster."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import ray
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

from ai._agent import MetadataCollector, TimelineBuilder
from ai._agent_actor import agent_name, start_metadata_agent
from ai._agent_timeline import Timeline, TimelineEvent
from ai._agent_vad import WINDOW, SileroStream, SpeechDetector, TrackVad, VadOptions
from ai._types import SpeakerTurn
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import room_service_pb2 as room_pb
from parley.room import Room
from parley.server.ray_runtime import start_ray
from parley.sfu.v1.resources_pb2 import TRACK_KIND_AUDIO

from ..egress.stack import Stack, recording_state
from ..egress.stack import stack as egress_stack
from ..sfu.conftest import ColourTrack
from .media import read_wav, speak

RATE, FRAME = 48000, 960  # 20 ms frames at 48 kHz, as aiortc decodes Opus
AGENT = "metadata-agent"


def said(text: str, folder: Path, voice: str = "en-us") -> npt.NDArray[np.float32]:
    """``text`` spoken by espeak-ng, 48 kHz mono float32."""
    samples, rate = read_wav(speak(text, folder / f"{abs(hash((text, voice)))}.wav", voice=voice))
    positions = np.arange(int(len(samples) * RATE / rate)) * rate / RATE
    return np.interp(positions, np.arange(len(samples)), samples).astype(np.float32)


def voiced(samples: npt.NDArray[np.float32], rate: int = RATE) -> tuple[float, float]:
    """Where a clip's sound begins and ends (seconds): espeak-ng pads a little silence."""
    loud = np.flatnonzero(np.abs(samples) > 0.02)
    return loud[0] / rate, loud[-1] / rate


def silence(seconds: float) -> npt.NDArray[np.float32]:
    return np.zeros(int(seconds * RATE), np.float32)


def frames(samples: npt.NDArray[np.float32], first_pts: int = 0) -> Iterator[tuple[float, AudioFrame]]:
    """20 ms stereo s16 frames with RTP-like timestamps, as aiortc hands them over, each with
    its time in seconds (its pts's)."""
    for index in range(0, len(samples) - FRAME + 1, FRAME):
        pcm = (samples[index : index + FRAME] * 32767).astype(np.int16)
        frame = AudioFrame.from_ndarray(
            np.repeat(pcm[None, :], 2, axis=0).T.reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = RATE, first_pts + index, fractions.Fraction(1, RATE)
        yield (first_pts + index) / RATE, frame


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> dict[str, npt.NDArray[np.float32]]:
    folder = tmp_path_factory.mktemp("agent-speech")
    return {
        "alice": said("Good morning everyone and welcome to the weekly planning meeting.", folder, "en-us+f3"),
        "bob": said("First we will review the budget for the new office near the station.", folder, "en-gb"),
    }


# --- voice activity, fed directly ----------------------------------------------------------


def test_the_streaming_vad_hears_what_one_offline_pass_hears(sentences: dict[str, npt.NDArray[np.float32]]) -> None:
    from faster_whisper.vad import get_vad_model

    audio = np.concatenate([silence(0.5), sentences["alice"], silence(0.5)])[::3]  # 48 → 16 kHz
    audio = audio[: len(audio) // WINDOW * WINDOW]
    offline = np.asarray(get_vad_model()(audio)).reshape(-1)
    stream, windows, streamed = SileroStream(), audio.reshape(-1, WINDOW), []
    at = 0
    for size in [1, 3, 7, 2, 16] * 100:  # pieces of every size, in order
        if at >= len(windows):
            break
        streamed.append(stream(windows[at : at + size]))
        at += size
    assert np.allclose(np.concatenate(streamed), offline, atol=1e-5)


def test_speech_is_found_where_it_is_said(sentences: dict[str, npt.NDArray[np.float32]]) -> None:
    alice, bob = sentences["alice"], sentences["bob"]
    audio = np.concatenate([silence(1.0), alice, silence(1.5), bob, silence(1.5)])
    vad, changes = TrackVad(), []
    for at, frame in frames(audio):
        changes += vad.push_frame(frame, 10.0 + at)  # any clock: the agent's starts at its join
    changes += vad.close(10.0 + len(audio) / RATE)
    assert [kind for kind, _ in changes] == ["speech_start", "speech_end"] * 2, changes
    first = voiced(alice)
    second_at = 1.0 + len(alice) / RATE + 1.5
    second = voiced(bob)
    expected = [10 + 1.0 + first[0], 10 + 1.0 + first[1], 10 + second_at + second[0], 10 + second_at + second[1]]
    for (_, found), truth in zip(changes, expected, strict=True):
        assert abs(found - truth) < 0.35, (changes, expected)


def test_silence_and_a_stopped_track_make_no_speech(sentences: dict[str, npt.NDArray[np.float32]]) -> None:
    quiet = TrackVad()
    assert [c for at, f in frames(silence(3.0)) for c in quiet.push_frame(f, at)] == []
    assert quiet.close(3.0) == []
    # Speech cut off mid-sentence, the track silent for 3 s, then silence again: it ended where
    # the audio stopped.
    cut = sentences["bob"][: int(1.5 * RATE)]
    vad, changes = TrackVad(), []
    for at, frame in frames(cut):
        changes += vad.push_frame(frame, at)
    for at, frame in frames(silence(1.0), first_pts=len(cut) + 3 * RATE):
        changes += vad.push_frame(frame, at)
    assert [kind for kind, _ in changes] == ["speech_start", "speech_end"], changes
    assert abs(changes[1][1] - voiced(cut)[1]) < 0.35, changes


def test_the_detector_ignores_blips_and_short_pauses() -> None:
    step = 0.032
    detector = SpeechDetector(VadOptions(min_speech=0.25, min_silence=0.6))

    def feed(probabilities: list[float], start: float) -> list[tuple[str, float]]:
        return [c for i, p in enumerate(probabilities) for c in detector.update(p, start + i * step, step)]

    assert feed([0.9] * 3 + [0.1] * 10, 0.0) == []  # 96 ms of "speech": noise
    changes = feed([0.9] * 20 + [0.1] * 8 + [0.9] * 20 + [0.1] * 30, 1.0)  # a 256 ms pause inside
    assert changes == [("speech_start", 1.0), ("speech_end", pytest.approx(1.0 + 48 * step))]
    assert feed([0.9] * 20, 10.0) == [("speech_start", 10.0)]
    assert list(detector.close(11.0)) == [("speech_end", 11.0)]
    assert list(detector.close(12.0)) == []


# --- the timeline, fed directly --------------------------------------------------------------


def test_the_builder_writes_down_the_meeting(sentences: dict[str, npt.NDArray[np.float32]]) -> None:
    builder = TimelineBuilder()
    builder.joined("alice", "Alice", 0.0)
    builder.joined("carol", "Carol", 0.0)
    builder.joined("bob", "Bob", 2.0)
    # Alice speaks on two tracks at once (one participant: one speech), Carol only sends silence.
    speech = np.concatenate([silence(0.5), sentences["alice"], silence(1.0)])
    for sid in ("TR_a1", "TR_a2"):
        builder.track_started("alice", sid)
    builder.track_started("carol", "TR_c")
    for at, frame in frames(speech):
        builder.frame("TR_a1", frame, 1.0 + at)
        builder.frame("TR_a2", frame, 1.0 + at)
    for at, frame in frames(silence(len(speech) / RATE)):
        builder.frame("TR_c", frame, 1.0 + at)
    builder.chat("bob", "Shall we start?", 3.0)
    builder.updated("bob", "Bob", 3.5)  # metadata only: no rename
    builder.updated("bob", "Robert", 4.0)
    # Bob speaks, is muted mid-sentence, and leaves.
    builder.track_started("bob", "TR_b")
    for at, frame in frames(sentences["bob"][: 2 * RATE]):
        builder.frame("TR_b", frame, 5.0 + at)
    builder.muted("TR_b", 7.0)
    builder.left("bob", 8.0)
    # Alice starts again and is still talking when the agent leaves.
    for at, frame in frames(sentences["alice"][:RATE], first_pts=len(speech) + RATE):
        builder.frame("TR_a1", frame, 1.0 + at)
    timeline = builder.finish(datetime.fromisoformat("2025-01-02T03:04:05+00:00"), 20.0)

    kinds = [(e.type, e.identity) for e in timeline.events]
    assert [k for k in kinds if k[0] in ("joined", "left", "renamed", "chat")] == [
        ("joined", "alice"),
        ("joined", "carol"),
        ("joined", "bob"),
        ("chat", "bob"),
        ("renamed", "bob"),
        ("left", "bob"),
    ]
    speech_of = {
        who: [(e.type, e.time) for e in timeline.events if e.identity == who and "speech" in e.type]
        for who in ("alice", "bob", "carol")
    }
    assert speech_of["carol"] == []
    assert [kind for kind, _ in speech_of["alice"]] == ["speech_start", "speech_end"] * 2
    assert abs(speech_of["alice"][0][1] - (1.5 + voiced(sentences["alice"])[0])) < 0.35
    assert speech_of["alice"][-1][1] == 20.0  # closed when the agent left
    assert [kind for kind, _ in speech_of["bob"]] == ["speech_start", "speech_end"]
    assert 6.5 < speech_of["bob"][1][1] <= 7.0  # muted at 7 s, mid-sentence
    assert [e.time for e in timeline.events] == sorted(e.time for e in timeline.events)
    assert timeline.participants == {"alice": "Alice", "carol": "Carol", "bob": "Robert"}
    chat = next(e for e in timeline.events if e.type == "chat")
    assert (chat.text, chat.name) == ("Shall we start?", "Bob")
    assert timeline.started_at == "2025-01-02T03:04:05+00:00"


def test_a_timeline_survives_json_and_gives_speaker_turns() -> None:
    events = (
        TimelineEvent(type="joined", time=0.0, identity="alice", name="Alice"),
        TimelineEvent(type="speech_start", time=1.25, identity="alice", name="Alice"),
        TimelineEvent(type="speech_start", time=2.0, identity="u-42", name=""),
        TimelineEvent(type="chat", time=2.5, identity="u-42", text="Grüße 👋"),
        TimelineEvent(type="speech_end", time=3.5, identity="alice", name="Alice"),
        TimelineEvent(type="renamed", time=4.0, identity="alice", name="Alice B."),
        TimelineEvent(type="speech_end", time=4.5, identity="u-42", name=""),
        TimelineEvent(type="speech_start", time=5.0, identity="alice", name="Alice B."),
    )
    timeline = Timeline(
        started_at="2025-01-02T03:04:05.678+00:00", participants={"alice": "Alice B.", "u-42": ""}, events=events
    )
    assert Timeline.from_json(timeline.to_json()) == timeline
    # The latest name (the identity without one); a start with no end (a cut file) is no turn.
    assert timeline.speaker_turns() == [
        SpeakerTurn(speaker="Alice B.", start=1.25, end=3.5),
        SpeakerTurn(speaker="u-42", start=2.0, end=4.5),
    ]
    with pytest.raises(ValueError, match="version 2"):
        Timeline.from_json(timeline.to_json().replace(b'"version": 1', b'"version": 2'))
    with pytest.raises(ValueError, match="not a metadata timeline"):
        Timeline.from_json(b"[]")


# --- the agent in a real meeting -----------------------------------------------------------


class SpeechTrack(AudioStreamTrack):
    """A microphone playing ``samples`` (48 kHz mono) in real time from its first frame, then
    silence; ``started`` is the wall-clock time of its first sample."""

    def __init__(self, samples: npt.NDArray[np.float32]) -> None:
        super().__init__()
        self.samples = (samples * 32767).astype(np.int16)
        self.started = 0.0
        self._sent = 0

    async def recv(self) -> AudioFrame:
        if self.started:
            await asyncio.sleep(max(0.0, self.started + (self._sent + FRAME) / RATE - time.time()))
        else:
            self.started = time.time()
        chunk = self.samples[self._sent : self._sent + FRAME]
        chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._sent, fractions.Fraction(1, RATE)
        self._sent += FRAME
        return frame


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> AsyncIterator[Stack]:
    start_ray(address=ray_address)
    async with egress_stack(tmp_path_factory.mktemp("agent-stack"), ray_address) as running:
        yield running


async def _bot(stack: Stack, room: str, identity: str) -> Room:
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True, can_publish_data=True)
    grant = await stack.admin.rooms.create_join_token(
        room, identity=identity, display_name=identity.title(), grants=grants
    )
    return await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)


async def _agent_token(stack: Stack, room: str) -> tuple[str, str]:
    """What the recording lifecycle gives the agent: hidden, subscribe-only, no recorder grant
    (the recording flag stays the recorder's)."""
    grants = room_pb.JoinGrants(can_subscribe=True, hidden=True)
    grant = await stack.admin.rooms.create_join_token(
        room, identity=AGENT, display_name="Metadata agent", grants=grants
    )
    return grant.sfu_url, grant.token


def _sessions(stack: Stack, room: str) -> list[str]:
    meeting = stack.sfu.rooms.rooms.get(room.removeprefix("rooms/"))
    return sorted(meeting.sessions) if meeting is not None and not meeting.closed else []


async def _until(check: object, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def _wall(timeline: Timeline, event: TimelineEvent) -> float:
    return datetime.fromisoformat(timeline.started_at).timestamp() + event.time


async def test_the_agent_writes_down_a_meeting_it_is_hidden_in(
    stack: Stack, sentences: dict[str, npt.NDArray[np.float32]]
) -> None:
    room = (await stack.admin.rooms.create(display_name="Agent")).name
    carol = await _bot(stack, room, "carol")  # there before the agent, never says a word
    await carol.publish(SpeechTrack(silence(1.0)), source="microphone")
    await carol.publish(ColourTrack(160, 120), source="camera")
    sfu_url, token = await _agent_token(stack, room)
    stop = asyncio.Event()
    collecting = asyncio.ensure_future(MetadataCollector(sfu_url, token).run(stop))
    await _until(lambda: AGENT in _sessions(stack, room))
    alice, bob = await _bot(stack, room, "alice"), await _bot(stack, room, "bob")
    try:
        # Alice speaks, then Bob while Alice's second sentence is still going.
        a = SpeechTrack(np.concatenate([silence(0.5), sentences["alice"], silence(1.0), sentences["alice"]]))
        b = SpeechTrack(np.concatenate([silence(0.5 + len(sentences["alice"]) / RATE + 2.0), sentences["bob"]]))
        await asyncio.gather(alice.publish(a, source="microphone"), bob.publish(b, source="microphone"))
        await alice.send_data(b"Hello from Alice", topic="chat")
        await bob.update_metadata(name="Robert")
        await _until(lambda: a.started and b.started)
        played = max(len(a.samples), len(b.samples)) / RATE
        await asyncio.sleep(a.started + played + 1.5 - time.time())
        assert AGENT not in alice.participants and AGENT not in carol.participants  # hidden
        # Microphones only: the camera is not worth decoding.
        audio = {sid for bot in (alice, bob, carol) for sid, t in bot.published.items() if t.kind == TRACK_KIND_AUDIO}
        agent_session = stack.sfu.rooms.rooms[room.removeprefix("rooms/")].sessions[AGENT]
        assert set(agent_session.subscriber.subscriptions) == audio and len(audio) == 3
        await bob.close()
        await asyncio.sleep(1.0)
        stop.set()
        timeline = await asyncio.wait_for(collecting, 20)
        assert AGENT not in _sessions(stack, room)  # it left
    finally:
        for bot in (alice, bob, carol):
            await bot.close()

    def events(kind: str, who: str) -> list[TimelineEvent]:
        return [e for e in timeline.events if e.type == kind and e.identity == who]

    assert [e.time for e in events("joined", "carol")] == [0.0]
    assert len(events("joined", "alice")) == len(events("joined", "bob")) == len(events("left", "bob")) == 1
    assert events("left", "bob")[0].name == "Robert" and [e.name for e in events("renamed", "bob")] == ["Robert"]
    assert [e.text for e in events("chat", "alice")] == ["Hello from Alice"]
    assert timeline.participants == {"carol": "Carol", "alice": "Alice", "bob": "Robert"}
    assert events("speech_start", "carol") == []
    # Where the speech was, on the wall clock, within a second.
    said_alice, said_bob = voiced(sentences["alice"]), voiced(sentences["bob"])
    second = 0.5 + len(sentences["alice"]) / RATE + 1.0
    expected = {
        "alice": [
            (a.started + 0.5 + said_alice[0], a.started + 0.5 + said_alice[1]),
            (a.started + second + said_alice[0], a.started + second + said_alice[1]),
        ],
        "bob": [(b.started + second + 1.0 + said_bob[0], b.started + second + 1.0 + said_bob[1])],
    }
    for who, spans in expected.items():
        starts, ends = events("speech_start", who), events("speech_end", who)
        found = [(_wall(timeline, s), _wall(timeline, e)) for s, e in zip(starts, ends, strict=True)]
        assert len(found) == len(spans), (who, found, spans)
        for (start, end), (true_start, true_end) in zip(found, spans, strict=True):
            assert abs(start - true_start) < 1.0 and abs(end - true_end) < 1.0, (who, found, spans)
    turns = timeline.speaker_turns()
    assert sorted({t.speaker for t in turns}) == ["Alice", "Robert"]


async def test_one_agent_per_room_which_leaves_when_the_recording_ends(stack: Stack) -> None:
    room = (await stack.admin.rooms.create(display_name="Recorded")).name
    alice = await _bot(stack, room, "alice")
    try:
        await alice.publish(SpeechTrack(silence(1.0)), source="microphone")
        recording = await stack.admin.recordings.start(room, mode="transcript")
        await recording_state(stack, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        await _until(lambda: alice.recording)
        sfu_url, token = await _agent_token(stack, room)
        # Two recordings' lifecycles starting it at once: one agent, one participant.
        first, second = await asyncio.gather(
            asyncio.to_thread(start_metadata_agent, room, sfu_url, token),
            asyncio.to_thread(start_metadata_agent, room.removeprefix("rooms/"), sfu_url, token),
        )
        assert first.actor._actor_id == second.actor._actor_id
        await _until(lambda: AGENT in _sessions(stack, room))
        assert [s for s in _sessions(stack, room) if s.startswith(AGENT)] == [AGENT]
        await asyncio.sleep(1.0)
        await alice.send_data(b"recorded", topic="chat")
        await asyncio.sleep(0.5)
        await stack.admin.recordings.stop(recording.name)  # the recorder leaves, so does the agent
        timeline = await asyncio.wait_for(first.timeline(), 30)
        assert await asyncio.wait_for(second.timeline(), 5) == timeline
        await _until(lambda: AGENT not in _sessions(stack, room))
        assert [e.text for e in timeline.events if e.type == "chat"] == ["recorded"]
        assert [e.type for e in timeline.events if e.identity == "alice"] == ["joined", "chat"]
        # Its work done, the actor is gone and the room's next recording gets a new one.
        await _until(lambda: not _named(agent_name(room)))
    finally:
        await alice.close()


async def test_a_stopped_agent_leaves(stack: Stack) -> None:
    room = (await stack.admin.rooms.create(display_name="Stopped")).name
    alice = await _bot(stack, room, "alice")
    try:
        agent = start_metadata_agent(room, *await _agent_token(stack, room))
        await _until(lambda: AGENT in _sessions(stack, room))
        agent.stop()
        timeline = await asyncio.wait_for(agent.timeline(), 20)
        await _until(lambda: AGENT not in _sessions(stack, room))
        assert [(e.type, e.identity) for e in timeline.events] == [("joined", "alice")]
        assert timeline.participants == {"alice": "Alice"}
    finally:
        await alice.close()


def _named(name: str) -> bool:
    return any(a["name"] == name for a in ray.util.list_named_actors(all_namespaces=True))
