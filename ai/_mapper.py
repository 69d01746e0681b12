"""Rows to protos, in one place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from parley.ai.v1 import metadata_agent_service_pb2 as agent_pb
from parley.ai.v1 import resources_pb2 as res
from parley.server import EnumNames

from ._agent_timeline import Timeline
from ._minutes import Minutes
from ._models import JobColumns, JobState, MetadataAgentRow, SummaryRow, TranscriptionRow, UploadRow
from ._types import Segment


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return ts


def duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(round(seconds * 1e9))
    return value


def seconds(value: duration_pb2.Duration) -> float:
    return value.ToNanoseconds() / 1e9


#: The stored job states ↔ the contract's, read from its descriptor.
JOB_STATES = EnumNames(res.JobState, JobState)


#: The timeline's event types (``ai._agent_timeline.EventType``) ↔ the contract's.
MEETING_EVENTS = EnumNames(agent_pb.MeetingEventType)


def _job_fields(row: JobColumns) -> dict[str, object]:
    return {"progress": row.progress, **_lifecycle(row)}


def _lifecycle(row: JobColumns | MetadataAgentRow) -> dict[str, object]:
    fields: dict[str, object] = {
        "state": JOB_STATES.value(row.state),
        "creator": row.owner,
        "create_time": timestamp(row.created_at),
        "update_time": timestamp(row.updated_at),
    }
    if row.ended_at is not None:
        fields["end_time"] = timestamp(row.ended_at)
    if row.state == JobState.FAILED:
        # error_code holds a grpc.StatusCode's name, which google.rpc.Code shares.
        code = code_pb2.Code.Value(row.error_code) if row.error_code else code_pb2.INTERNAL
        fields["error"] = status_pb2.Status(code=code, message=row.error_message)
    return fields


def upload(row: UploadRow) -> res.Upload:
    return res.Upload(
        name=f"uploads/{row.id}",
        filename=row.filename,
        size_bytes=row.size_bytes,
        create_time=timestamp(row.created_at),
    )


def segment(value: Segment) -> res.TranscriptSegment:
    return res.TranscriptSegment(
        start_offset=duration(value.start),
        end_offset=duration(value.end),
        text=value.text,
        speaker=value.speaker,
        language=value.language,
    )


def transcription(row: TranscriptionRow, segments: Sequence[Segment] = ()) -> res.Transcription:
    if row.source_kind == "s3":
        source = res.MediaSource(s3_object=res.S3Object(bucket=row.s3_bucket, key=row.s3_key))
    elif row.source_kind == "tracks":
        source = res.MediaSource(
            speaker_tracks=res.SpeakerTracks(tracks=[_speaker_track(entry) for entry in row.speaker_tracks])
        )
    else:
        source = res.MediaSource(upload=f"uploads/{row.upload_id}")
    message = res.Transcription(
        name=f"transcriptions/{row.id}",
        source=source,
        language=row.language,
        model=row.model,
        speaker_timeline=[
            res.SpeakerTurn(speaker=who, start_offset=duration(start), end_offset=duration(end))
            for who, start, end in row.speaker_timeline
        ],
        detected_language=row.detected_language,
        vocabulary=row.vocabulary,
        segments=[segment(s) for s in segments],
        **_job_fields(row),  # type: ignore[arg-type]
    )
    if row.duration_seconds is not None:
        message.media_duration.CopyFrom(duration(row.duration_seconds))
    return message


def _speaker_track(entry: dict[str, Any]) -> res.SpeakerTrack:
    track = res.SpeakerTrack(speaker=entry["speaker"], offset=duration(entry["offset"]))
    if entry.get("s3_key"):
        track.s3_object.CopyFrom(res.S3Object(bucket=entry["s3_bucket"], key=entry["s3_key"]))
    else:
        track.upload = f"uploads/{entry['upload_id']}"
    return track


def summary(row: SummaryRow) -> res.Summary:
    message = res.Summary(
        name=f"summaries/{row.id}",
        language=row.language,
        markdown=row.markdown,
        engine=row.engine,
        **_job_fields(row),  # type: ignore[arg-type]
    )
    if row.minutes is not None:
        minutes = Minutes.from_dict(row.minutes)
        message.minutes.CopyFrom(
            res.Minutes(
                summary=minutes.summary,
                topics=minutes.topics,
                next_steps=[res.NextStep(description=s.description, owner=s.owner) for s in minutes.next_steps],
            )
        )
    if row.transcription_id:
        message.transcription = f"transcriptions/{row.transcription_id}"
    else:
        message.text = row.source_text
    return message


def metadata_agent(row: MetadataAgentRow, timeline: Timeline | None = None) -> agent_pb.MetadataAgent:
    """An agent, with its timeline once it has one."""
    message = agent_pb.MetadataAgent(name=f"metadataAgents/{row.id}", room=row.room, **_lifecycle(row))  # type: ignore[arg-type]
    if timeline is not None:
        message.start_time.CopyFrom(timestamp(datetime.fromisoformat(timeline.started_at)))
        message.events.extend(
            agent_pb.MeetingEvent(
                type=MEETING_EVENTS.value(event.type),
                offset=duration(event.time),
                participant_identity=event.identity,
                participant_name=event.name,
                text=event.text,
            )
            for event in timeline.events
        )
        message.speaker_turns.extend(
            res.SpeakerTurn(speaker=t.speaker[:200], start_offset=duration(t.start), end_offset=duration(t.end))
            for t in timeline.speaker_turns()
        )
    return message
