"""The egress service: records rooms to files (MP4 composites, Ogg/Opus audio) on the Ray
cluster, one recorder process per recording, uploaded to S3 (or a folder) as they are made."""

from ._server import EgressServer
from ._settings import EgressSettings

__all__ = ["EgressServer", "EgressSettings"]
