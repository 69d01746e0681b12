"""The S3 client recorders and the service use for a ``Storage``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config

from ._spec import Storage

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def s3_client(storage: Storage) -> S3Client:
    config = Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60)
    client: S3Client = boto3.client(
        "s3", endpoint_url=storage.endpoint_url or None, region_name=storage.region, config=config
    )
    return client
