"""Where a recording's bytes go, as the muxer produces them: a folder, or S3.

A sink is a write-only, non-seekable byte stream (the muxers write fragmented MP4 and Ogg, which
never seek back), so a recording leaves its prefix behind whatever happens to the process.

``S3Sink`` never blocks a write on the network: every byte goes first to a local spool file, and
a background thread uploads full parts of a multipart upload from it. A JSON sidecar beside the
spool records the upload and its parts after each one, so that ``recover_spool`` can finish the
upload of a recorder that died, as the playable prefix of its recording.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["FolderSink", "S3Sink", "Sink", "SinkResult", "pending_spools", "recover_spool"]

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
#: S3 refuses parts under 5 MiB, except the last one.
MIN_PART_SIZE = 5 * MIB
SPOOL_SUFFIX = ".spool"
SIDECAR_SUFFIX = ".spool.json"


@dataclass(frozen=True)
class SinkResult:
    """A finished recording: where it is, its key and its size."""

    location: str
    """``file:///abs/path`` or ``s3://bucket/key``."""
    key: str
    size_bytes: int


class Sink(Protocol):
    """What the writers need: a write-only, non-seekable binary stream."""

    @property
    def bytes_written(self) -> int: ...

    def write(self, data: bytes) -> int: ...

    def seekable(self) -> bool: ...

    def tell(self) -> int: ...

    def flush(self) -> None: ...

    def close(self) -> SinkResult: ...

    def abort(self) -> None: ...


class FolderSink:
    """Writes ``root/key``; every write is flushed to the OS, so a crash leaves the prefix."""

    def __init__(self, root: Path, key: str) -> None:
        self._root = root.resolve()
        path = (self._root / key).resolve()
        if path == self._root or not path.is_relative_to(self._root):
            raise ValueError(f"key {key!r} leaves the folder {self._root}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.key = key
        self._file: IO[bytes] | None = path.open("wb")
        self._written = 0

    @property
    def bytes_written(self) -> int:
        return self._written

    def write(self, data: bytes) -> int:
        if self._file is None:
            raise ValueError("write to a closed sink")
        self._file.write(data)
        self._file.flush()
        self._written += len(data)
        return len(data)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> SinkResult:
        if self._file is not None:
            self._file.close()
            self._file = None
        return SinkResult(self.path.as_uri(), self.key, self._written)

    def abort(self) -> None:
        """Stops writing and keeps what was written (a partial recording still plays)."""
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True)
class _Part:
    number: int
    start: int
    end: int


class S3Sink:
    """Streams a recording to ``s3://bucket/key`` through a local spool and a multipart upload.

    ``write`` appends to the spool file and returns; parts of at least ``part_size`` bytes are
    uploaded by a background thread (the backlog lives on disk, memory holds one part at most).
    The upload is created with the first full part: a recording shorter than one part becomes a
    single ``put_object`` on ``close``. ``close`` blocks on the network (run it in a thread from
    async code); if it fails, the spool and sidecar stay for ``recover_spool``.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        content_type: str,
        spool_dir: Path,
        part_size: int = 8 * MIB,
        *,
        log_every: int = 64 * MIB,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (S3's minimum)")
        self._client = client
        self.bucket = bucket
        self.key = key
        self.content_type = content_type
        self.part_size = part_size
        self._log_every = log_every
        spool_dir.mkdir(parents=True, exist_ok=True)
        stem = _spool_stem(key)
        self.spool_path = spool_dir / f"{stem}{SPOOL_SUFFIX}"
        self.sidecar_path = spool_dir / f"{stem}{SIDECAR_SUFFIX}"
        if self.sidecar_path.exists():
            raise FileExistsError(f"{self.sidecar_path} is left from an earlier run: recover_spool() it first")
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._write_sidecar()
        self._spool: IO[bytes] | None = self.spool_path.open("wb")
        self._written = 0
        self._queued_to = 0  # spool offset up to which parts are queued
        self._next_part = 1
        self._uploaded = 0
        self._error: BaseException | None = None
        self._queue: queue.Queue[_Part | None] = queue.Queue()
        self._worker = threading.Thread(target=self._upload_loop, name=f"s3-sink:{key}", daemon=True)
        self._worker.start()

    @property
    def bytes_written(self) -> int:
        return self._written

    @property
    def bytes_uploaded(self) -> int:
        """Bytes of the spool already uploaded as parts (progress)."""
        return self._uploaded

    def write(self, data: bytes) -> int:
        if self._spool is None:
            raise ValueError("write to a closed sink")
        self._spool.write(data)
        # Flushed at once: the uploader reads the spool through its own descriptor, and a
        # crash must leave every byte for recover_spool.
        self._spool.flush()
        self._written += len(data)
        if self._written - self._queued_to >= self.part_size:
            self._queue_part(self._written)
        return len(data)

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        if self._spool is not None:
            self._spool.flush()

    def close(self) -> SinkResult:
        """Uploads the tail as the last part and completes the upload (blocks on the network)."""
        if self._spool is None:
            raise ValueError("sink already closed")
        self._spool.close()
        self._spool = None
        if self._upload_id is None and self._queued_to == 0:
            # Shorter than one part: no multipart upload was started, one PUT holds it all.
            self._queue.put(None)
            self._worker.join()
            self._raise_upload_error()
            self._client.put_object(
                Bucket=self.bucket, Key=self.key, Body=self.spool_path.read_bytes(), ContentType=self.content_type
            )
        else:
            if self._written > self._queued_to:
                self._queue_part(self._written)
            self._queue.put(None)
            self._worker.join()
            self._raise_upload_error()
            assert self._upload_id is not None
            _complete(self._client, self.bucket, self.key, self._upload_id, self._parts)
        _remove(self.spool_path, self.sidecar_path)
        logger.info("uploaded s3://%s/%s (%d bytes)", self.bucket, self.key, self._written)
        return SinkResult(f"s3://{self.bucket}/{self.key}", self.key, self._written)

    def abort(self) -> None:
        """Drops the recording: aborts the multipart upload and removes the spool and sidecar."""
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._queue.put(None)
        self._worker.join()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
        _remove(self.spool_path, self.sidecar_path)

    # -- the uploader thread ------------------------------------------------------------------

    def _queue_part(self, end: int) -> None:
        self._queue.put(_Part(self._next_part, self._queued_to, end))
        self._next_part += 1
        self._queued_to = end

    def _raise_upload_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"upload of s3://{self.bucket}/{self.key} failed; spool kept at {self.spool_path}"
            ) from self._error

    def _upload_loop(self) -> None:
        with self.spool_path.open("rb") as spool:
            while (part := self._queue.get()) is not None:
                if self._error is not None:
                    continue  # keep draining; close() reports the error and keeps the spool
                try:
                    self._upload(spool, part)
                except Exception as error:
                    logger.exception("upload of part %d of s3://%s/%s failed", part.number, self.bucket, self.key)
                    self._error = error

    def _upload(self, spool: IO[bytes], part: _Part) -> None:
        if self._upload_id is None:
            response = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self._upload_id = response["UploadId"]
            self._write_sidecar()
        spool.seek(part.start)
        body = spool.read(part.end - part.start)
        etag = _upload_part(self._client, self.bucket, self.key, self._upload_id, part.number, body)
        self._parts.append({"number": part.number, "etag": etag, "end_offset": part.end})
        self._write_sidecar()
        before = self._uploaded
        self._uploaded = part.end
        if before // self._log_every != part.end // self._log_every:
            logger.info("s3://%s/%s: %d MiB uploaded", self.bucket, self.key, part.end // MIB)

    def _write_sidecar(self) -> None:
        state = {
            "bucket": self.bucket,
            "key": self.key,
            "upload_id": self._upload_id,
            "content_type": self.content_type,
            "spool": self.spool_path.name,
            "parts": self._parts,
        }
        # Written aside then renamed: a crash never leaves half a sidecar.
        temporary = self.sidecar_path.with_name(self.sidecar_path.name + ".tmp")
        temporary.write_text(json.dumps(state))
        os.replace(temporary, self.sidecar_path)


def sidecar_path(spool_dir: Path, key: str) -> Path:
    """Where an ``S3Sink`` writing ``key`` keeps its sidecar (found by ``recover_spool``)."""
    return spool_dir / f"{_spool_stem(key)}{SIDECAR_SUFFIX}"


def pending_spools(spool_dir: Path) -> list[Path]:
    """The sidecars that dead recorders left in ``spool_dir``, for ``recover_spool``."""
    if not spool_dir.is_dir():
        return []
    return sorted(spool_dir.glob(f"*{SIDECAR_SUFFIX}"))


def recover_spool(client: S3Client, sidecar: Path) -> SinkResult | None:
    """Finishes the upload that a dead recorder left: the parts the sidecar lists, plus what the
    spool holds beyond them as the last part. The object is then the recording's prefix (a
    fragmented MP4 or an Ogg stream cut after its last write, which still plays).

    Returns None when the sidecar's spool is gone (nothing to recover; the sidecar is removed).
    """
    state = json.loads(sidecar.read_text())
    bucket: str = state["bucket"]
    key: str = state["key"]
    upload_id: str | None = state["upload_id"]
    parts: list[dict[str, Any]] = state["parts"]
    spool_path = sidecar.with_name(state["spool"])
    if not spool_path.exists():
        if upload_id is not None:
            with contextlib.suppress(client.exceptions.NoSuchUpload):
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        sidecar.unlink()
        return None
    size = spool_path.stat().st_size
    if upload_id is None:
        client.put_object(Bucket=bucket, Key=key, Body=spool_path.read_bytes(), ContentType=state["content_type"])
    else:
        uploaded_to = parts[-1]["end_offset"] if parts else 0
        if size > uploaded_to:
            with spool_path.open("rb") as spool:
                spool.seek(uploaded_to)
                body = spool.read()
            # The number after the last recorded part: a part uploaded but not yet recorded when
            # the process died is replaced by this one.
            number = len(parts) + 1
            etag = _upload_part(client, bucket, key, upload_id, number, body)
            parts = [*parts, {"number": number, "etag": etag, "end_offset": size}]
        if parts:
            _complete(client, bucket, key, upload_id, parts)
        else:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            client.put_object(Bucket=bucket, Key=key, Body=b"", ContentType=state["content_type"])
    _remove(spool_path, sidecar)
    logger.info("recovered s3://%s/%s (%d bytes)", bucket, key, size)
    return SinkResult(f"s3://{bucket}/{key}", key, size)


def _upload_part(client: S3Client, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> str:
    response = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=body)
    return response["ETag"]


def _complete(client: S3Client, bucket: str, key: str, upload_id: str, parts: list[dict[str, Any]]) -> None:
    client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": p["number"], "ETag": p["etag"]} for p in parts]},
    )


def _spool_stem(key: str) -> str:
    """A file name for the key: readable, and unique thanks to a hash of the key."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key).strip("._")[-80:]
    return f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _remove(*paths: Path) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
