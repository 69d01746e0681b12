"""Where the AI service keeps uploads and results: a local folder (embedded default) or an S3
bucket, behind one small interface. Methods are blocking; the service calls them in threads."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from ._audio import MediaError, open_s3_object

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

log = logging.getLogger(__name__)


class BlobNotFound(Exception):
    """No object under that key."""


class BlobStore(Protocol):
    def put_file(self, key: str, path: Path) -> None: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def open(self, key: str) -> BinaryIO:
        """A seekable reader (for media decoding)."""
        ...

    def delete(self, key: str) -> None: ...


def s3_client(*, endpoint_url: str = "", region: str = "us-east-1") -> S3Client:
    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    client: S3Client = boto3.client("s3", endpoint_url=endpoint_url or None, region_name=region, config=config)
    return client


class FolderStore:
    """Objects as files under ``root`` (written to a temporary name, then renamed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} leaves the storage folder")
        return path

    def _write(self, key: str, write: object) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, staging = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out:
                if isinstance(write, bytes):
                    out.write(write)
                else:
                    with Path(str(write)).open("rb") as source:
                        shutil.copyfileobj(source, out, 1 << 20)
            os.replace(staging, path)
        except BaseException:
            Path(staging).unlink(missing_ok=True)
            raise

    def put_file(self, key: str, path: Path) -> None:
        self._write(key, path)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._write(key, data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Store:
    """Objects under ``prefix`` in an S3 bucket."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put_file(self, key: str, path: Path) -> None:
        size = path.stat().st_size
        sent = 0
        next_report = 0.0

        def progress(count: int) -> None:
            nonlocal sent, next_report
            sent += count
            if size and sent / size >= next_report:
                log.info("uploading s3://%s/%s%s: %.0f %%", self.bucket, self.prefix, key, 100 * sent / size)
                next_report += 0.25

        self.client.upload_file(str(path), self.bucket, self.prefix + key, Callback=progress)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from None
            raise

    def open(self, key: str) -> BinaryIO:
        try:
            return open_s3_object(self.client, self.bucket, self.prefix + key)
        except MediaError:
            raise BlobNotFound(key) from None

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


def store_from_url(url: str, *, client: S3Client | None = None) -> BlobStore:
    """``/path`` / ``file:///path`` → FolderStore; ``s3://bucket/prefix`` → S3Store."""
    if url.startswith("s3://"):
        if client is None:
            raise ValueError("an S3 client is needed for s3:// storage")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        return S3Store(client, bucket, prefix)
    return FolderStore(Path(url.removeprefix("file://")))
