"""The Ray runtime that services running work on Ray (AI jobs, recordings) share: one call
that joins a cluster or starts a local one. Imported on its own (``parley.server.ray_runtime``):
it needs Ray, which only those services install."""

from __future__ import annotations

import logging
import os
from typing import Any

import ray

log = logging.getLogger(__name__)


def start_ray(*, address: str = "", num_cpus: int | None = None, temp_dir: str = "") -> None:
    """Connects to the Ray cluster at ``address``, or starts a local one with ``num_cpus``
    (default: the machine's). Idempotent within a process."""
    if ray.is_initialized():
        return
    # A local, single-user Ray needs no token; a cluster's own settings decide otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": True, "logging_level": logging.WARNING}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
        if temp_dir:
            kwargs["_temp_dir"] = temp_dir
    ray.init(**kwargs)
    log.info("Ray ready: %s", ray.cluster_resources())  # type: ignore[no-untyped-call]
