"""Where a recorder's bytes go (a folder file or an S3 upload, from its spec) and how the file
is described to the service while it grows: shared by the composite and the track recorders."""

from __future__ import annotations

from ._sink import FolderSink, S3Sink
from ._spec import FileInfo, RecordingSpec
from ._storage import s3_client


def open_sink(spec: RecordingSpec, key: str, content_type: str) -> FolderSink | S3Sink:
    """Opens the output (blocking: run it in a thread)."""
    if spec.storage.bucket:
        return S3Sink(s3_client(spec.storage), spec.storage.bucket, key, content_type, spec.spool_dir)
    assert spec.storage.folder is not None
    return FolderSink(spec.storage.folder, key)


def location(spec: RecordingSpec, key: str) -> str:
    if spec.storage.bucket:
        return f"s3://{spec.storage.bucket}/{key}"
    assert spec.storage.folder is not None
    return (spec.storage.folder / key).resolve().as_uri()


def file_info(spec: RecordingSpec, key: str, content_type: str, size: int, duration: float, epoch: float) -> FileInfo:
    """The file as it stands: ``epoch`` is the wall-clock time of its first media."""
    return FileInfo(
        location=location(spec, key),
        key=key,
        size_bytes=size,
        content_type=content_type,
        duration=duration,
        media_start=epoch,
        media_end=epoch + duration if duration else 0.0,
    )
