"""Where recordings' files are, as control sees them: a local folder (the one the egress writes
to, mounted here too) or an S3 bucket, behind one small interface. Control never reads the
files; it hands out download links and deletes them. Blocking calls (boto3) run in threads.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from parley._files import sign_file_token

from ._settings import ControlSettings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

#: The route of the gateway that serves files of the recordings folder to a token's holder.
FILES_ROUTE = "/v1/files/"


class StorageUnavailable(Exception):
    """The storage could not be reached, or refused."""


class RecordingStorage(Protocol):
    #: The bucket whose notifications concern recordings (empty for a folder).
    bucket: str

    async def download_url(self, key: str, *, filename: str, content_type: str, ttl: timedelta) -> str:
        """A URL that lets its holder download ``key`` for ``ttl``."""
        ...

    async def delete(self, key: str) -> None:
        """Deletes ``key``; a missing object is fine."""
        ...


class FolderStorage:
    """Files under ``root``: links are gateway paths carrying a signed download token."""

    bucket = ""

    def __init__(self, root: Path, files_secret: str) -> None:
        self.root = root
        self._secret = files_secret

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"key {key!r} leaves the recordings folder")
        return path

    async def download_url(self, key: str, *, filename: str, content_type: str, ttl: timedelta) -> str:
        if not self._secret:
            raise StorageUnavailable("downloads from the recordings folder need a files secret (PARLEY_FILES_SECRET)")
        self._path(key)
        token = sign_file_token(
            self._secret, path=key, filename=filename, content_type=content_type, ttl=ttl.total_seconds()
        )
        return FILES_ROUTE + token

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)


class S3Storage:
    """Objects in one bucket: links are presigned GET URLs."""

    def __init__(self, bucket: str, *, endpoint_url: str = "") -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=30)
        self._client: S3Client = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)

    async def download_url(self, key: str, *, filename: str, content_type: str, ttl: timedelta) -> str:
        params = {
            "Bucket": self.bucket,
            "Key": key,
            "ResponseContentDisposition": f'attachment; filename="{filename}"',
            "ResponseContentType": content_type,
        }
        try:
            return await asyncio.to_thread(
                self._client.generate_presigned_url,
                "get_object",
                Params=params,
                ExpiresIn=max(1, int(ttl.total_seconds())),
            )
        except Exception as error:  # botocore raises many kinds (credentials, endpoint...)
            raise StorageUnavailable(f"cannot sign a link to s3://{self.bucket}/{key}: {error}") from error

    async def delete(self, key: str) -> None:
        # S3 answers a delete of a missing key with success.
        try:
            await asyncio.to_thread(self._client.delete_object, Bucket=self.bucket, Key=key)
        except Exception as error:
            raise StorageUnavailable(f"cannot delete s3://{self.bucket}/{key}: {error}") from error


def recording_storage(settings: ControlSettings) -> RecordingStorage | None:
    """The configured storage: the bucket if set, else the folder, else none."""
    if settings.recordings_bucket:
        return S3Storage(settings.recordings_bucket, endpoint_url=settings.s3_endpoint)
    if settings.recordings_dir is not None:
        return FolderStorage(settings.recordings_dir, settings.files_secret)
    return None
