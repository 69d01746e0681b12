"""Fixtures of the recorder's tests: a bucket on the session's moto S3 server."""

from __future__ import annotations

import contextlib
import secrets
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


@pytest.fixture
def bucket(s3: S3Client) -> str:
    """A new, empty bucket for one test."""
    name = f"recordings-{secrets.token_hex(4)}"
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=name)
    return name
