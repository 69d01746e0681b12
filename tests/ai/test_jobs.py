"""The AI service's rules: who sees and may change which jobs, input validation, bad media,
summaries of transcriptions; its ``/metrics`` following a job."""

from __future__ import annotations

from pathlib import Path

import grpc
import httpx
import pytest

from parley import Client, ParleyError
from parley.ai.v1 import resources_pb2 as ai_res
from parley.ai.v1 import transcription_service_pb2 as transcription_pb
from parley.ai.v1 import transcription_service_pb2_grpc as transcription_grpc

from ..test_observability import scrape, value
from .conftest import MEDIA_BUCKET, AiStack
from .media import write_video_only
from .speech import MEETING
from .speech import meeting_wav as make_meeting_wav


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_meeting_wav(tmp_path_factory.mktemp("short") / "short.wav", MEETING[:2])


async def _fails(client: Client, name: str) -> ai_res.Transcription:
    async for _ in client.transcriptions.watch(name):
        pass
    job = await client.transcriptions.get(name)
    assert job.state == ai_res.JOB_STATE_FAILED
    return job


async def test_anonymous_callers_are_refused(ai_stack: AiStack) -> None:
    with pytest.raises(ParleyError) as refused:
        await ai_stack.anonymous.transcriptions.create(s3_bucket=MEDIA_BUCKET, s3_key="x.wav")
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(ParleyError) as forged:
        await ai_stack.anonymous.with_bearer("pk_nope.secret").transcriptions.get("0" * 32)
    assert forged.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_jobs_are_private_to_their_creator(ai_stack: AiStack, short_wav: Path) -> None:
    alice, _ = await ai_stack.user()
    bob, _ = await ai_stack.user()
    job = await alice.transcriptions.create_from_file(short_wav)
    summary = await alice.summaries.create(text="We agreed to ship on Friday.")
    for call in (
        bob.transcriptions.get(job.name),
        bob.transcriptions.cancel(job.name),
        bob.transcriptions.delete(job.name),
        bob.summaries.get(summary.name),
    ):
        with pytest.raises(ParleyError) as hidden:
            await call
        assert hidden.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(ParleyError) as not_yours:
        await bob.summaries.create(transcription=job.name)
    assert not_yours.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in not_yours.value.field_violations] == ["summary.transcription"]
    assert job.name not in [j.name async for j in bob.transcriptions.list()]
    assert job.name in [j.name async for j in alice.transcriptions.list()]
    await ai_stack.wait(alice, job.name)


async def test_api_key_scopes(ai_stack: AiStack, short_wav: Path) -> None:
    owner, _ = await ai_stack.user()
    job = await owner.transcriptions.create_from_file(short_wav)
    reader = await ai_stack.key("ai:read")
    writer = await ai_stack.key("ai:write")
    unrelated = await ai_stack.key("rooms:read")
    assert (await reader.transcriptions.get(job.name)).name == job.name  # ai:read sees every job
    with pytest.raises(ParleyError) as denied:
        await reader.transcriptions.create_from_file(short_wav)
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ParleyError) as denied:
        await unrelated.summaries.create(text="hello")
    assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    own = await writer.summaries.create(text="We agreed to ship on Friday.")
    with pytest.raises(ParleyError) as hidden:  # ai:write alone sees only its own jobs
        await writer.transcriptions.get(job.name)
    assert hidden.value.code == grpc.StatusCode.NOT_FOUND
    assert (await writer.summaries.get(own.name)).creator.startswith("apiKeys/")
    await ai_stack.wait(owner, job.name)


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        ({"transcription": {}}, ["transcription.source"]),
        ({"transcription": {"source": {"upload": "uploads/nope"}}}, ["transcription.source.upload"]),
        (
            {"transcription": {"source": {"s3_object": {"bucket": "A", "key": ""}}}},
            ["transcription.source.s3_object.bucket", "transcription.source.s3_object.key"],
        ),
        (
            {"transcription": {"source": {"s3_object": {"bucket": "meetings", "key": "k"}}, "language": "english"}},
            ["transcription.language"],
        ),
        (
            {
                "transcription": {
                    "source": {"s3_object": {"bucket": "meetings", "key": "k"}},
                    "speaker_timeline": [{"speaker": "A", "start_offset": "5s", "end_offset": "1s"}],
                }
            },
            ["transcription.speaker_timeline[0]"],
        ),
    ],
)
async def test_invalid_requests_name_their_fields(
    ai_stack: AiStack, request_: dict[str, object], fields: list[str]
) -> None:
    from google.protobuf import json_format

    client, _ = await ai_stack.user()
    before = [j.name async for j in client.transcriptions.list()]
    message = json_format.ParseDict(request_, transcription_pb.CreateTranscriptionRequest())
    stub = transcription_grpc.TranscriptionServiceStub(client.ai_channel)  # type: ignore[arg-type]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateTranscription(message, metadata=client._metadata)
    error = ParleyError.from_rpc_error(refused.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(v.field for v in error.field_violations) == sorted(fields)
    assert [j.name async for j in client.transcriptions.list()] == before  # nothing written


async def test_unsupported_languages_and_models_are_refused_up_front(ai_stack: AiStack) -> None:
    client, _ = await ai_stack.user()
    for language, model, field, words in (
        ("fr", "", "transcription.language", "only knows English"),
        ("xx", "", "transcription.language", "not a language Whisper knows"),
        ("", "huge-v9", "transcription.model", "unknown speech model"),
    ):
        with pytest.raises(ParleyError) as refused:
            await client.transcriptions.create(s3_bucket=MEDIA_BUCKET, s3_key="any.wav", language=language, model=model)
        assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert [v.field for v in refused.value.field_violations] == [field]
        assert words in refused.value.field_violations[0].description


async def test_bad_media_fails_the_job_clearly_and_the_service_stays_up(
    ai_stack: AiStack, tmp_path: Path, short_wav: Path
) -> None:
    client, _ = await ai_stack.user()
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio at all\n" * 100)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 64)
    video = write_video_only(tmp_path / "silent.mp4", "mp4", "mpeg4")
    empty_key = "empty.wav"
    ai_stack.s3.put_object(Bucket=MEDIA_BUCKET, Key=empty_key, Body=b"")
    cases = {
        "text": (await client.transcriptions.create_from_file(text), "not a media file"),
        "junk": (await client.transcriptions.create_from_file(junk), "not a media file"),
        "video": (await client.transcriptions.create_from_file(video), "no audio"),
        "empty": (await client.transcriptions.create(s3_bucket=MEDIA_BUCKET, s3_key=empty_key), "empty"),
        "missing": (await client.transcriptions.create(s3_bucket=MEDIA_BUCKET, s3_key="no/such.wav"), "does not exist"),
    }
    for case, (created, words) in cases.items():
        job = await _fails(client, created.name)
        assert words in job.error.message, (case, job.error.message)
        assert job.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], case
    with pytest.raises(ParleyError) as not_ready:
        await client.transcriptions.export(cases["junk"][0].name, "srt")
    assert not_ready.value.code == grpc.StatusCode.FAILED_PRECONDITION
    # A summary of a failed transcription fails too, saying why.
    summary = await client.summaries.create(transcription=cases["junk"][0].name)
    async for _ in client.summaries.watch(summary.name):
        pass
    failed = await client.summaries.get(summary.name)
    assert failed.state == ai_res.JOB_STATE_FAILED and "nothing to summarize" in failed.error.message
    # The service still works.
    good = await ai_stack.wait(client, (await client.transcriptions.create_from_file(short_wav)).name)
    assert good.state == ai_res.JOB_STATE_SUCCEEDED


async def test_empty_uploads_are_refused(ai_stack: AiStack, tmp_path: Path) -> None:
    client, _ = await ai_stack.user()
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(ParleyError) as refused:
        await client.transcriptions.upload(empty)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


async def test_summary_of_a_transcription_waits_for_it(ai_stack: AiStack, short_wav: Path) -> None:
    client, _ = await ai_stack.user()
    job = await client.transcriptions.create_from_file(short_wav)
    summary = await client.summaries.create(transcription=job.name)
    assert summary.state == ai_res.JOB_STATE_PENDING
    states = [s.state async for s in client.summaries.watch(summary.name)]
    assert states[-1] == ai_res.JOB_STATE_SUCCEEDED
    done = await client.summaries.get(summary.name)
    assert done.markdown.strip() and done.engine.startswith("light")
    # The minutes: a structure, its Markdown rendered from it.
    assert done.HasField("minutes") and done.minutes.summary in done.markdown
    assert all(step.description in done.markdown for step in done.minutes.next_steps)
    assert (await client.transcriptions.get(job.name)).state == ai_res.JOB_STATE_SUCCEEDED
    listed = [s async for s in client.summaries.list()]
    assert [s.name for s in listed][:1] == [summary.name]


async def test_deleting_removes_the_job_and_its_transcript(ai_stack: AiStack, short_wav: Path) -> None:
    client, _ = await ai_stack.user()
    job = await ai_stack.wait(client, (await client.transcriptions.create_from_file(short_wav)).name)
    await client.transcriptions.delete(job.name)
    with pytest.raises(ParleyError) as gone:
        await client.transcriptions.get(job.name)
    assert gone.value.code == grpc.StatusCode.NOT_FOUND
    key = f"jobs/transcriptions/{job.name.split('/')[1]}/transcript.json"
    assert "Contents" not in ai_stack.s3.list_objects_v2(Bucket="parley-ai", Prefix=key)


async def test_metrics_count_jobs_and_their_speed(ai_stack: AiStack, short_wav: Path) -> None:
    assert ai_stack.ai.metrics is not None
    url = ai_stack.ai.metrics.url
    async with httpx.AsyncClient() as http:
        before = scrape((await http.get(url)).text)
        client, _ = await ai_stack.user()
        job = await ai_stack.wait(client, (await client.transcriptions.create_from_file(short_wav)).name)
        assert job.state == ai_res.JOB_STATE_SUCCEEDED
        after = scrape((await http.get(url)).text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("parley_ai_jobs_total", kind="transcription", state="RUNNING") >= 1
    assert moved("parley_ai_jobs_total", kind="transcription", state="SUCCEEDED") >= 1
    assert moved("parley_ai_transcription_real_time_factor_count") >= 1
    create = {"service": "parley.ai.v1.TranscriptionService", "method": "CreateTranscription", "code": "OK"}
    upload = {"service": "parley.ai.v1.TranscriptionService", "method": "UploadMedia", "code": "OK"}
    assert moved("parley_rpc_requests_total", **create) == 1
    assert moved("parley_rpc_requests_total", **upload) == 1
