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
    # Whisper on two shared cores, then the summary engine: minutes, not seconds.
    ended = await recording_state(
        running,
        recording.name,
        {rec_pb.RECORDING_STATE_NOTIFICATION_SUCCEEDED, rec_pb.RECORDING_STATE_NOTIFICATION_FAILED},
        within=900.0,
    )
    assert ended.state == rec_pb.RECORDING_STATE_NOTIFICATION_SUCCEEDED, ended
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
