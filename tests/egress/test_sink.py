"""The sinks: bytes reach a folder or S3 as they are written, and a dead recorder's spool
becomes the prefix of its recording."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from egress._sink import MIB, FolderSink, S3Sink, pending_spools, recover_spool

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def _object(s3: S3Client, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_folder_sink_writes_the_file_as_it_goes(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path, "rooms/abc/recording.mp4")
    assert not sink.seekable()
    sink.write(b"hello ")
    # Flushed at each write: a crash now leaves the prefix on disk.
    assert (tmp_path / "rooms/abc/recording.mp4").read_bytes() == b"hello "
    sink.write(b"world")
    assert sink.tell() == sink.bytes_written == 11
    result = sink.close()
    path = (tmp_path / "rooms/abc/recording.mp4").resolve()
    assert result.location == path.as_uri() and result.key == "rooms/abc/recording.mp4" and result.size_bytes == 11
    assert path.read_bytes() == b"hello world"


def test_folder_sink_abort_keeps_the_partial_file(tmp_path: Path) -> None:
    sink = FolderSink(tmp_path, "a.ogg")
    sink.write(b"partial")
    sink.abort()
    assert (tmp_path / "a.ogg").read_bytes() == b"partial"


@pytest.mark.parametrize("key", ["../escape.mp4", "/etc/passwd", "a/../../b", ""])
def test_folder_sink_refuses_keys_that_leave_the_folder(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="leaves the folder"):
        FolderSink(tmp_path / "root", key)


def test_s3_sink_uploads_parts_in_the_background(
    s3: S3Client, bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(12 * MIB + 12345)
    sink = S3Sink(s3, bucket, "rooms/abc/rec.mp4", "video/mp4", tmp_path, part_size=5 * MIB, log_every=5 * MIB)
    assert not sink.seekable()
    sidecar = pending_spools(tmp_path)
    assert len(sidecar) == 1
    with caplog.at_level(logging.INFO, logger="egress._sink"):
        for offset in range(0, len(data), 64 * 1024):
            sink.write(data[offset : offset + 64 * 1024])
        assert sink.bytes_written == len(data)
        result = sink.close()
    assert result.location == f"s3://{bucket}/rooms/abc/rec.mp4" and result.size_bytes == len(data)
    assert sink.bytes_uploaded == len(data)
    head = s3.head_object(Bucket=bucket, Key="rooms/abc/rec.mp4")
    assert head["ContentType"] == "video/mp4" and head["ETag"].strip('"').endswith("-3")
    assert _object(s3, bucket, "rooms/abc/rec.mp4") == data
    assert pending_spools(tmp_path) == [] and list(tmp_path.iterdir()) == []
    assert any("MiB uploaded" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("size", [0, 1000])
def test_s3_sink_shorter_than_a_part_is_one_put(s3: S3Client, bucket: str, tmp_path: Path, size: int) -> None:
    sink = S3Sink(s3, bucket, "short.ogg", "audio/ogg", tmp_path, part_size=5 * MIB)
    data = os.urandom(size)
    sink.write(data)
    result = sink.close()
    assert result.size_bytes == size
    assert _object(s3, bucket, "short.ogg") == data
    assert s3.head_object(Bucket=bucket, Key="short.ogg")["ContentType"] == "audio/ogg"


def test_s3_sink_abort_drops_the_upload(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    sink = S3Sink(s3, bucket, "dropped.mp4", "video/mp4", tmp_path, part_size=5 * MIB)
    sink.write(os.urandom(6 * MIB))
    sink.abort()
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    assert list(tmp_path.iterdir()) == []


def _crash(sink: S3Sink) -> None:
    """What a dead process leaves: its spool and sidecar, after the parts it uploaded."""
    sink._queue.put(None)
    sink._worker.join()
    assert sink._spool is not None
    sink._spool.close()


def test_recover_spool_completes_a_dead_recorders_upload(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    data = os.urandom(7 * MIB)
    sink = S3Sink(s3, bucket, "rooms/dead/rec.mp4", "video/mp4", tmp_path, part_size=5 * MIB)
    for offset in range(0, len(data), MIB):
        sink.write(data[offset : offset + MIB])
    _crash(sink)
    del sink
    [sidecar] = pending_spools(tmp_path)
    state = json.loads(sidecar.read_text())
    assert state["upload_id"] and [p["end_offset"] for p in state["parts"]] == [5 * MIB]
    result = recover_spool(s3, sidecar)
    assert (
        result is not None and result.size_bytes == len(data) and result.location == f"s3://{bucket}/rooms/dead/rec.mp4"
    )
    assert _object(s3, bucket, "rooms/dead/rec.mp4") == data
    assert list(tmp_path.iterdir()) == []


def test_recover_spool_before_the_first_part(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    sink = S3Sink(s3, bucket, "early.ogg", "audio/ogg", tmp_path, part_size=5 * MIB)
    sink.write(b"OggS and a bit")
    _crash(sink)
    [sidecar] = pending_spools(tmp_path)
    result = recover_spool(s3, sidecar)
    assert result is not None and result.size_bytes == 14
    assert _object(s3, bucket, "early.ogg") == b"OggS and a bit"


def test_a_new_sink_refuses_a_key_with_a_pending_spool(s3: S3Client, bucket: str, tmp_path: Path) -> None:
    sink = S3Sink(s3, bucket, "twice.ogg", "audio/ogg", tmp_path, part_size=5 * MIB)
    _crash(sink)
    with pytest.raises(FileExistsError, match="recover_spool"):
        S3Sink(s3, bucket, "twice.ogg", "audio/ogg", tmp_path, part_size=5 * MIB)
