"""The AI service's Prometheus metrics (``parley_ai_*``)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Jobs that reached a state in this process: RUNNING, SUCCEEDED, FAILED (by kind).
JOB_STATES = Counter("parley_ai_jobs", "Job state changes made by this process, by kind and state.", ("kind", "state"))
#: Jobs this process holds: running, or queued for a speech or summary actor.
JOBS_ACTIVE = Gauge("parley_ai_jobs_active", "Jobs held by this process (running or queued), by kind.", ("kind",))
REAL_TIME_FACTOR = Histogram(
    "parley_ai_transcription_real_time_factor",
    "Seconds spent per second of media, per transcription (decode, chunking, speech, storing).",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 5),
)
