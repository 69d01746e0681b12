"""Fixtures of the AI service's tests: control and the AI service with their real neighbours
(PostgreSQL, Ray, and the moto S3 server of ``tests/conftest.py``)."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ai import AiServer, AiSettings
from control import ALL_SCOPES, ControlServer, ControlSettings
from parley import Client
from parley.ai.v1 import resources_pb2 as ai_res

from ..conftest import TOKEN_SECRET

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

#: Converted / joined model weights, kept between test runs (ignored by git).
MODEL_CACHE = Path(__file__).resolve().parents[2] / ".cache" / "parley-models"


# -- the AI service with its real neighbours ------------------------------------------------

AI_BUCKET = "parley-ai"
MEDIA_BUCKET = "meetings"


@dataclass
class AiStack:
    """control (SQLite, dev login) + the AI service (job records in a fresh PostgreSQL
    database, results in moto's S3, work on a local Ray) and clients for both."""

    control: ControlServer
    ai: AiServer
    s3: S3Client
    anonymous: Client
    admin_key: Client

    async def user(self, subject: str | None = None) -> tuple[Client, str]:
        """A logged-in user's client (talking to control and the AI service) and ``users/{id}``."""
        subject = subject or f"user-{secrets.token_hex(4)}"
        login = await self.anonymous.users.dev_login(subject, display_name=subject)
        return self.anonymous.with_bearer(login.access_token), login.user.name

    async def key(self, *scopes: str) -> Client:
        response = await self.admin_key.api_keys.create(display_name="ai test key", scopes=list(scopes))
        key_id = response.api_key.name.removeprefix("apiKeys/")
        return self.anonymous.with_bearer(f"{key_id}.{response.secret}")

    async def wait(self, client: Client, name: str) -> ai_res.Transcription:
        """Follows a transcription until it ends; returns it with its segments."""
        async for _update in client.transcriptions.watch(name):
            pass
        return await client.transcriptions.get(name, full=True)


@pytest.fixture(scope="session")
async def ai_stack(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, s3: S3Client, s3_endpoint: str, ray_address: str
) -> AsyncIterator[AiStack]:
    folder = tmp_path_factory.mktemp("ai-stack")
    for bucket in (AI_BUCKET, MEDIA_BUCKET):
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=bucket)
    control_settings = ControlSettings(
        database_url=f"sqlite:///{folder / 'control.db'}", token_secret=TOKEN_SECRET, dev_login=True
    )
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    async with ControlServer(control_settings) as control:
        settings = AiSettings(
            database_url=pg_url,
            control_target=control.target,
            storage=f"s3://{AI_BUCKET}/jobs",
            s3_endpoint_url=s3_endpoint,
            ray_address=ray_address,
            speech_actors=2,
            speech_concurrency=1,
            chunk_seconds=12.0,
            model_cache_dir=MODEL_CACHE,
        )
        async with AiServer(settings, metrics_address="127.0.0.1:0") as ai:
            key, secret = await control.control.create_api_key(None, "ai test bootstrap", ALL_SCOPES)
            anonymous = Client(control.target, ai_target=ai.target)
            admin_key = anonymous.with_bearer(f"{key.id}.{secret}")
            yield AiStack(control, ai, s3, anonymous, admin_key)
            await anonymous.aclose()
