"""Record and transcribe together, with real parts: a bot speaks known sentences (espeak-ng)
into a room, a TRANSCRIPT recording of it is saved by the egress service, and control has it
transcribed (Whisper tiny.en) and summarized (the light engine) by the AI service."""

from __future__ import annotations

import asyncio
import fractions
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiortc.mediastreams import AudioStreamTrack
from av import AudioFrame

from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import metadata_agent_service_pb2_grpc as agent_grpc
from parley.ai.v1 import resources_pb2 as ai_res
from parley.control.v1 import recording_service_pb2 as rec_pb
from parley.control.v1 import room_service_pb2 as room_pb
from parley.room import Room

from ..ai.speech import meeting_wav, normalise, word_error_rate
from .stack import Stack, recording_state, stack

SENTENCES = [
    "Good morning everyone and welcome to the weekly planning meeting.",
    "First we will review the budget for the new office near the station.",
    "The design team will present the new website to the board next month.",
    "Please send your comments on the draft before the end of the week.",
]
RATE, FRAME = 48000, 960  # 20 ms frames, as a browser's Opus track


class WavTrack(AudioStreamTrack):
    """A WAV file played in real time as a microphone (48 kHz mono, 20 ms frames), then
    silence; ``played`` is set once the whole file has been sent."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        from ..ai.media import read_wav

        samples, rate = read_wav(path)
        positions = np.arange(int(len(samples) * RATE / rate)) * rate / RATE
        resampled = np.interp(positions, np.arange(len(samples)), samples)
        self.samples = (resampled * 32767).astype(np.int16)
        self.duration = len(self.samples) / RATE
        self.played = asyncio.Event()
        self._sample = 0

    async def recv(self) -> AudioFrame:
        if hasattr(self, "_start"):
            wait = self._start + (self._sample + FRAME) / RATE - time.time()
            await asyncio.sleep(max(0.0, wait))
        else:
            self._start = time.time()
        chunk = self.samples[self._sample : self._sample + FRAME]
        if len(chunk) < FRAME:
            self.played.set()
            chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), dtype=np.int16)])
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, RATE)
        self._sample += FRAME
        return frame


async def _followed_up(running: Stack, name: str) -> rec_pb.Recording:
    """The recording once transcribed and summarized (Whisper on two shared cores, then the
    summary engine: minutes, not seconds); fails if its follow-up failed."""
    ended = await recording_state(
        running,
        name,
        {rec_pb.RECORDING_STATE_NOTIFICATION_SUCCEEDED, rec_pb.RECORDING_STATE_NOTIFICATION_FAILED},
        within=900.0,
    )
    assert ended.state == rec_pb.RECORDING_STATE_NOTIFICATION_SUCCEEDED, ended
    return ended


@pytest.fixture(scope="module")
async def ai_recording_stack(tmp_path_factory: pytest.TempPathFactory, ray_address: str) -> AsyncIterator[Stack]:
    async with stack(tmp_path_factory.mktemp("record-transcribe"), ray_address, with_ai=True) as running:
        yield running


async def test_a_transcript_recording_is_transcribed_and_summarized(ai_recording_stack: Stack, tmp_path: Path) -> None:
    running = ai_recording_stack
    speech = WavTrack(meeting_wav(tmp_path / "meeting.wav", SENTENCES, pause=0.8))
    room = await running.admin.rooms.create(display_name="Planning")
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    grant = await running.admin.rooms.create_join_token(room.name, identity="speaker", grants=grants)
    # The owner of the recording: an API key that may record, nothing more.
    key = await running.admin.api_keys.create(display_name="recorder", scopes=["recordings:write"])
    owner = running.admin.with_bearer(f"{key.api_key.name.removeprefix('apiKeys/')}.{key.secret}")
    bot = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
    try:
        recording = await owner.recordings.start(room.name, mode="transcript")
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        await bot.publish(speech, source="microphone")
        await asyncio.wait_for(speech.played.wait(), speech.duration + 60)
        await asyncio.sleep(1.5)  # the recorder runs a little behind
        await owner.recordings.stop(recording.name)
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_SAVED})
    finally:
        await bot.close()
    ended = await _followed_up(running, recording.name)
    assert ended.transcription.startswith("transcriptions/") and ended.summary.startswith("summaries/")
    transcription = await running.admin.transcriptions.get(ended.transcription, full=True)
    assert transcription.state == ai_res.JOB_STATE_SUCCEEDED
    heard = " ".join(segment.text for segment in transcription.segments)
    said = " ".join(SENTENCES)
    wer = word_error_rate(said, heard)
    print(f"WER {wer:.3f}: {' '.join(normalise(heard))}")
    assert wer < 0.2, (wer, heard)
    summary = await running.admin.summaries.get(ended.summary)
    assert summary.state == ai_res.JOB_STATE_SUCCEEDED and summary.markdown.strip(), summary
    # The recording itself is kept and still downloads.
    link = await owner.recordings.download_link(ended.name)
    assert link.url.startswith("/v1/files/")


# Each speaker's words are their own (few shared words), so where a word lands tells whose
# it is; two pairs of them talk over each other.
CROSSTALK = [
    ("Alice", "Good morning everyone, the budget for the new office is finally ready.", 0.0),
    ("Bob", "Sorry to interrupt, the heating engineer phoned about the broken boiler.", -2.5),
    ("Carol", "Our customers asked for longer opening hours on Saturdays.", 0.8),
    ("Alice", "Thank you, I will send the contract to the landlord tomorrow.", 0.8),
    ("Carol", "Then I can write survey questions during this week.", -2.0),
    ("Bob", "Great, so we schedule moving day for March.", 0.8),
]


def _crosstalk_wavs(
    folder: Path, lines: list[tuple[str, str, float]] = CROSSTALK, *, silent: tuple[str, ...] = ()
) -> tuple[dict[str, Path], list[tuple[str, float, float]]]:
    """One WAV per speaker (and one of silence for each of ``silent``), all of the same
    length, each sentence placed where it is said: a negative gap starts it that many seconds
    before the previous one ends. Returns the files and who spoke when."""
    import wave

    from ..ai.media import read_wav, speak
    from ..ai.speech import VOICES

    placed: list[tuple[str, np.ndarray, float]] = []
    rate, end = 22050, 0.0
    for index, (speaker, sentence, gap) in enumerate(lines):
        samples, rate = read_wav(speak(sentence, folder / f"line{index}.wav", voice=VOICES[speaker]))
        start = max(0.0, end + gap)
        placed.append((speaker, samples, start))
        end = start + len(samples) / rate
    length = int((end + 1.0) * rate)
    tracks = {speaker: np.zeros(length, np.float32) for speaker in [*(p[0] for p in placed), *silent]}
    for speaker, samples, start in placed:
        at = int(start * rate)
        tracks[speaker][at : at + len(samples)] += samples
    files = {}
    for speaker, samples in tracks.items():
        files[speaker] = folder / f"{speaker}.wav"
        with wave.open(str(files[speaker]), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(rate)
            out.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    spoken = [(speaker, start, start + len(samples) / rate) for speaker, samples, start in placed]
    return files, spoken


def _own_words(lines: list[tuple[str, str, float]] = CROSSTALK) -> dict[str, set[str]]:
    """The words only one speaker says."""
    words: dict[str, set[str]] = {}
    for speaker, sentence, _ in lines:
        words.setdefault(speaker, set()).update(normalise(sentence))
    return {
        speaker: mine - set().union(*(other for name, other in words.items() if name != speaker))
        for speaker, mine in words.items()
    }


async def test_a_transcript_names_each_speaker_even_over_crosstalk(ai_recording_stack: Stack, tmp_path: Path) -> None:
    """Three bots, two pairs talking over each other: the TRANSCRIPT recording keeps each
    one's audio apart, and the transcript made from it gives nearly every word its speaker."""
    running = ai_recording_stack
    files, spoken = _crosstalk_wavs(tmp_path)
    room = await running.admin.rooms.create(display_name="Office move")
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    bots: dict[str, Room] = {}
    try:
        for speaker in files:
            grant = await running.admin.rooms.create_join_token(
                room.name, identity=speaker.lower(), display_name=speaker, grants=grants
            )
            bots[speaker] = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
        recording = await running.admin.recordings.start(room.name, mode="transcript")
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        voices = {speaker: WavTrack(path) for speaker, path in files.items()}
        await asyncio.gather(*(bots[s].publish(track, source="microphone") for s, track in voices.items()))
        longest = max(track.duration for track in voices.values())
        await asyncio.wait_for(asyncio.gather(*(t.played.wait() for t in voices.values())), longest + 60)
        await asyncio.sleep(1.5)
        await running.admin.recordings.stop(recording.name)
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_SAVED})
    finally:
        for bot in bots.values():
            await bot.close()
    ended = await _followed_up(running, recording.name)
    transcription = await running.admin.transcriptions.get(ended.transcription, full=True)
    assert len(transcription.source.speaker_tracks.tracks) == 3, transcription.source
    assert "Alice" in transcription.vocabulary and "Office move" in transcription.vocabulary
    for segment in transcription.segments:
        print(f"{segment.start_offset.ToTimedelta()} {segment.speaker}: {segment.text}")
    own = _own_words()
    right = wrong = 0
    for segment in transcription.segments:
        for word in normalise(segment.text):
            owners = [speaker for speaker, words in own.items() if word in words]
            if owners:
                right += owners == [segment.speaker]
                wrong += owners != [segment.speaker]
    share = right / max(right + wrong, 1)
    print(f"{right} of {right + wrong} speaker-specific words carry the right name ({share:.1%})")
    assert right + wrong >= 0.7 * sum(len(words) for words in own.values())
    assert share >= 0.95
    # Said in this order (by the sentences' starts), the segments come in this order too.
    firsts = [
        min(s.start_offset.ToTimedelta().total_seconds() for s in transcription.segments if s.speaker == name)
        for name in ("Alice", "Bob", "Carol")
    ]
    starts = [next(start for speaker, start, _ in spoken if speaker == name) for name in ("Alice", "Bob", "Carol")]
    assert sorted(range(3), key=firsts.__getitem__) == sorted(range(3), key=starts.__getitem__)
    summary = await running.admin.summaries.get(ended.summary)
    assert summary.state == ai_res.JOB_STATE_SUCCEEDED, summary
    print(summary.markdown)


# Two speakers in turn, a pause between turns.
TURNS = [
    ("Alice", "Good morning everyone, the budget for the new office is finally ready.", 0.0),
    ("Bob", "The heating engineer phoned about the broken boiler yesterday.", 1.5),
    ("Alice", "Thank you, I will send the contract to the landlord tomorrow.", 1.5),
    ("Bob", "Great, so we schedule moving day for March.", 1.5),
]


async def test_a_screen_recording_transcript_is_named_from_the_metadata_agent(
    ai_recording_stack: Stack, tmp_path: Path
) -> None:
    """Two bots speak in turn, a third says nothing and leaves early; a screen recording (one
    mixed file) with a transcript: control sends the metadata agent in, and its speaker turns
    name the transcript's segments."""
    running = ai_recording_stack
    files, _ = _crosstalk_wavs(tmp_path, TURNS, silent=("Carol",))
    room = await running.admin.rooms.create(display_name="Office boiler")
    grants = room_pb.JoinGrants(can_publish=True, can_subscribe=True)
    bots: dict[str, Room] = {}
    try:
        for speaker in files:
            grant = await running.admin.rooms.create_join_token(
                room.name, identity=speaker.lower(), display_name=speaker, grants=grants
            )
            bots[speaker] = await Room.connect(grant.sfu_url, grant.token, auto_subscribe=False)
        recording = await running.admin.recordings.start(
            room.name, mode="screen_recording", transcribe=True, collect_metadata=True
        )
        assert recording.metadata_agent == f"metadataAgents/{recording.name.rsplit('/', 1)[1]}", recording
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_ACTIVE})
        meeting = running.sfu.rooms.rooms[room.name.removeprefix("rooms/")]
        deadline = time.monotonic() + 60
        while "metadata-agent" not in meeting.sessions:  # its Ray worker starts (seconds)
            assert time.monotonic() < deadline, "the metadata agent never joined"
            await asyncio.sleep(0.2)
        voices = {speaker: WavTrack(path) for speaker, path in files.items()}
        await asyncio.gather(*(bots[s].publish(track, source="microphone") for s, track in voices.items()))
        played = asyncio.gather(*(t.played.wait() for t in voices.values()))
        await asyncio.wait_for(played, voices["Alice"].duration + 60)
        await bots.pop("Carol").close()
        await asyncio.sleep(1.5)
        await running.admin.recordings.stop(recording.name)
        await recording_state(running, recording.name, {rec_pb.RECORDING_STATE_SAVED})
    finally:
        for bot in bots.values():
            await bot.close()
    ended = await _followed_up(running, recording.name)

    assert running.admin.ai_channel is not None
    agents = agent_grpc.MetadataAgentServiceStub(running.admin.ai_channel)
    request = agent_pb.GetMetadataAgentRequest(name=ended.metadata_agent)
    agent = await agents.GetMetadataAgent(request, metadata=running.admin._metadata)
    assert agent.state == ai_res.JOB_STATE_SUCCEEDED and agent.room == room.name, agent

    def events(kind: agent_pb.MeetingEventType.ValueType, who: str) -> int:
        return sum(e.type == kind and e.participant_identity == who for e in agent.events)

    for who in ("alice", "bob", "carol"):
        assert events(agent_pb.MEETING_EVENT_TYPE_JOINED, who) == 1, who
    assert events(agent_pb.MEETING_EVENT_TYPE_LEFT, "carol") == 1
    assert events(agent_pb.MEETING_EVENT_TYPE_SPEECH_START, "alice") >= 2
    assert events(agent_pb.MEETING_EVENT_TYPE_SPEECH_START, "bob") >= 2
    assert events(agent_pb.MEETING_EVENT_TYPE_SPEECH_START, "carol") == 0
    assert {turn.speaker for turn in agent.speaker_turns} == {"Alice", "Bob"}

    transcription = await running.admin.transcriptions.get(ended.transcription, full=True)
    assert not transcription.source.HasField("speaker_tracks"), transcription.source  # the mixed file
    assert {turn.speaker for turn in transcription.speaker_timeline} == {"Alice", "Bob"}
    for segment in transcription.segments:
        print(f"{segment.start_offset.ToTimedelta()} {segment.speaker}: {segment.text}")
    own = _own_words(TURNS)
    right = wrong = 0
    for segment in transcription.segments:
        for word in normalise(segment.text):
            owners = [speaker for speaker, words in own.items() if word in words]
            if owners:
                right += owners == [segment.speaker]
                wrong += owners != [segment.speaker]
    print(f"{right} of {right + wrong} speaker-specific words carry the right name")
    assert right + wrong >= 0.7 * sum(len(words) for words in own.values())
    assert right / (right + wrong) >= 0.9
