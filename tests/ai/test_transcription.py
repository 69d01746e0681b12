"""Transcription through the real service: espeak-ng speech, moto S3, Ray actors, control
authenticating the callers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import ray
from google.protobuf import duration_pb2

from ai._chunking import Chunk, pack
from parley import InvalidArgument
from parley.ai.v1 import resources_pb2 as ai_res

from .conftest import MEDIA_BUCKET, AiStack
from .media import encode_as
from .speech import MEETING, three_voices, word_error_rate
from .speech import meeting_wav as make_meeting_wav

SUCCEEDED = ai_res.JOB_STATE_SUCCEEDED


@pytest.fixture(scope="session")
def meeting_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 50 s of meeting talk, one sentence every few seconds."""
    return make_meeting_wav(tmp_path_factory.mktemp("speech") / "meeting.wav")


def _text(job: ai_res.Transcription) -> str:
    return " ".join(s.text for s in job.segments)


async def test_meeting_is_transcribed_accurately_with_sane_timestamps(ai_stack: AiStack, meeting_wav: Path) -> None:
    client, owner = await ai_stack.user()
    created = await client.transcriptions.create_from_file(meeting_wav)
    assert created.state == ai_res.JOB_STATE_PENDING and created.creator == owner

    job = await ai_stack.wait(client, created.name)

    assert job.state == SUCCEEDED, job.error.message
    wer = word_error_rate(" ".join(MEETING), _text(job))
    assert wer < 0.15, (wer, _text(job))
    assert job.detected_language == "en" and job.progress == 1.0
    duration = job.media_duration.ToNanoseconds() / 1e9
    assert 50 < duration < 60
    starts = [s.start_offset.ToNanoseconds() for s in job.segments]
    ends = [s.end_offset.ToNanoseconds() for s in job.segments]
    assert starts == sorted(starts) and ends == sorted(ends)
    assert all(0 <= a <= b <= duration * 1e9 for a, b in zip(starts, ends, strict=True))
    # Chunks were spread over the workers: more than one chunk of at most 12 s.
    assert len(job.segments) >= 5


async def test_containers_give_the_same_text_read_straight_from_s3(
    ai_stack: AiStack, meeting_wav: Path, tmp_path: Path
) -> None:
    client, _ = await ai_stack.user()
    short = meeting_wav
    jobs = {}
    for container, codec, suffix in (
        ("wav", "pcm_s16le", "wav"),
        ("webm", "libopus", "webm"),
        ("ogg", "libopus", "ogg"),
        ("mp4", "aac", "mp4"),
    ):
        path = short if container == "wav" else encode_as(short, tmp_path / f"meeting.{suffix}", container, codec)
        key = f"containers/{path.name}"
        ai_stack.s3.upload_file(str(path), MEDIA_BUCKET, key)
        jobs[container] = await client.transcriptions.create(s3_bucket=MEDIA_BUCKET, s3_key=key)
    texts = {}
    for container, created in jobs.items():
        job = await ai_stack.wait(client, created.name)
        assert job.state == SUCCEEDED, (container, job.error.message)
        texts[container] = _text(job)
        assert word_error_rate(" ".join(MEETING), texts[container]) < 0.15, (container, texts[container])
    # Lossy codecs may change a word's spelling, not the words heard.
    for container, text in texts.items():
        assert word_error_rate(texts["wav"], text) <= 0.15, (container, text, texts["wav"])


async def test_speakers_are_attributed_from_the_timeline(ai_stack: AiStack, tmp_path: Path) -> None:
    client, _ = await ai_stack.user()
    sentences = MEETING[:6]
    path, spoken = three_voices(tmp_path / "three.wav", sentences)
    turns = [
        ai_res.SpeakerTurn(speaker=s.speaker, start_offset=_duration(s.start), end_offset=_duration(s.end))
        for s in spoken
    ]
    upload = await client.transcriptions.upload(path)
    created = await client.transcriptions.create(upload=upload.name, speaker_timeline=turns)
    job = await ai_stack.wait(client, created.name)
    assert job.state == SUCCEEDED, job.error.message
    for said in spoken:
        heard = [s for s in job.segments if said.start - 0.5 <= s.start_offset.ToNanoseconds() / 1e9 < said.end]
        assert heard, (said, list(job.segments))
        assert {s.speaker for s in heard} == {said.speaker}, (said, heard)
    text = await client.transcriptions.export(created.name, "text")
    assert text.startswith("Alice: ") and "\n\nBob: " in text
    data = json.loads(await client.transcriptions.export(created.name, "json"))
    assert [s["speaker"] for s in data["segments"]][:1] == ["Alice"]


async def test_one_file_per_speaker_names_every_segment_even_when_they_overlap(
    ai_stack: AiStack, tmp_path: Path
) -> None:
    """Two speakers, each in a file of their own that starts later in the meeting (an offset),
    talking over each other: each segment carries its file's speaker and the meeting's time."""
    client, _ = await ai_stack.user()
    first = make_meeting_wav(tmp_path / "maria.wav", MEETING[:2], pause=0.5)
    second = make_meeting_wav(tmp_path / "thomas.wav", MEETING[2:4], pause=0.5)
    tracks = [
        ai_res.SpeakerTrack(speaker="Maria", upload=(await client.transcriptions.upload(first)).name),
        ai_res.SpeakerTrack(
            speaker="Thomas", upload=(await client.transcriptions.upload(second)).name, offset=_duration(3.0)
        ),
    ]
    created = await client.transcriptions.create(speaker_tracks=tracks, vocabulary="Maria, Thomas")
    assert created.vocabulary == "Maria, Thomas"
    assert [t.speaker for t in created.source.speaker_tracks.tracks] == ["Maria", "Thomas"]
    job = await ai_stack.wait(client, created.name)
    assert job.state == SUCCEEDED, job.error.message
    by_speaker = {name: [s for s in job.segments if s.speaker == name] for name in ("Maria", "Thomas")}
    assert {s.speaker for s in job.segments} == {"Maria", "Thomas"}
    # Two sentences each: tiny.en misses a few words (a sanity check; accuracy is tested elsewhere).
    assert word_error_rate(" ".join(MEETING[:2]), " ".join(s.text for s in by_speaker["Maria"])) < 0.3
    assert word_error_rate(" ".join(MEETING[2:4]), " ".join(s.text for s in by_speaker["Thomas"])) < 0.3
    # Thomas's file starts 3 s into the meeting: so does his first segment, while Maria talks.
    assert 2.5 < by_speaker["Thomas"][0].start_offset.ToNanoseconds() / 1e9 < 4.5
    starts = [s.start_offset.ToNanoseconds() for s in job.segments]
    assert starts == sorted(starts)
    text = await client.transcriptions.export(created.name, "text")
    assert text.startswith("Maria: ") and "Thomas: " in text


async def test_a_speaker_file_the_caller_does_not_own_is_refused(ai_stack: AiStack, meeting_wav: Path) -> None:
    owner, _ = await ai_stack.user()
    stranger, _ = await ai_stack.user()
    upload = await owner.transcriptions.upload(meeting_wav)
    with pytest.raises(InvalidArgument) as refused:
        await stranger.transcriptions.create(speaker_tracks=[ai_res.SpeakerTrack(speaker="Ann", upload=upload.name)])
    assert "speaker_tracks.tracks[0].upload" in str(refused.value)


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


async def test_two_files_transcribe_at_once(ai_stack: AiStack, tmp_path: Path) -> None:
    client, _ = await ai_stack.user()
    first = make_meeting_wav(tmp_path / "one.wav", MEETING[:3])
    second = make_meeting_wav(tmp_path / "two.wav", MEETING[3:6])
    jobs = [await client.transcriptions.create_from_file(p) for p in (first, second)]
    seen_running = set()

    async def follow(name: str) -> ai_res.Transcription:
        async for update in client.transcriptions.watch(name):
            if update.state == ai_res.JOB_STATE_RUNNING:
                seen_running.add(name)
        return await client.transcriptions.get(name, full=True)

    done = await asyncio.gather(*(follow(j.name) for j in jobs))
    assert [d.state for d in done] == [SUCCEEDED, SUCCEEDED]
    assert word_error_rate(" ".join(MEETING[:3]), _text(done[0])) < 0.15
    assert word_error_rate(" ".join(MEETING[3:6]), _text(done[1])) < 0.15
    assert seen_running == {j.name for j in jobs}


async def test_a_killed_actor_does_not_fail_the_job(ai_stack: AiStack, meeting_wav: Path) -> None:
    client, _ = await ai_stack.user()
    pool = await ai_stack.ai.runner.speech_pool("tiny.en")
    created = await client.transcriptions.create_from_file(meeting_wav)
    killed = False
    async for update in client.transcriptions.watch(created.name):
        if not killed and update.progress > 0.1:
            # Kill one actor while chunks are in flight on it; Ray restarts it.
            ray.kill(pool.actors[0], no_restart=False)
            killed = True
    assert killed
    job = await client.transcriptions.get(created.name, full=True)
    assert job.state == SUCCEEDED, job.error.message
    assert word_error_rate(" ".join(MEETING), _text(job)) < 0.15


async def test_cancelling_stops_the_work(ai_stack: AiStack, meeting_wav: Path) -> None:
    client, _ = await ai_stack.user()
    runner = ai_stack.ai.runner
    created = await client.transcriptions.create_from_file(meeting_wav)
    async for update in client.transcriptions.watch(created.name):
        if update.state == ai_res.JOB_STATE_RUNNING:
            break
    cancelled = await client.transcriptions.cancel(created.name)
    assert cancelled.state == ai_res.JOB_STATE_CANCELLED and cancelled.HasField("end_time")
    assert created.name.split("/")[1] not in runner._tasks
    progress = cancelled.progress
    await asyncio.sleep(1.5)
    after = await client.transcriptions.get(created.name)
    assert after.state == ai_res.JOB_STATE_CANCELLED and after.progress == progress
    # Cancelling again is harmless; an ended job is returned unchanged.
    again = await client.transcriptions.cancel(created.name)
    assert again.state == ai_res.JOB_STATE_CANCELLED


def test_chunks_never_run_across_a_change_of_speaker() -> None:
    """A mixed file named from a speaker timeline: Whisper may make one segment of a whole
    chunk, and a segment is named whole, so a chunk ends where another person starts."""
    second = 16000
    regions = [Chunk(0, 3 * second), Chunk(4 * second, 7 * second), Chunk(8 * second, 11 * second)]
    assert pack(regions) == [Chunk(0, 11 * second)]
    assert pack(regions, breaks=[7.9]) == [Chunk(0, 7 * second), Chunk(8 * second, 11 * second)]
    assert pack(regions, breaks=[3.5, 8.0]) == [
        Chunk(0, 3 * second),
        Chunk(4 * second, 7 * second),
        Chunk(8 * second, 11 * second),
    ]
    assert pack(regions, breaks=[20.0]) == [Chunk(0, 11 * second)]
