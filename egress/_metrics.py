"""The egress service's Prometheus metrics (``parley_egress_*``), served by the server kit's
``/metrics`` (port 9467 by default)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

#: Egresses this node runs now, by kind (composite, audio, track).
JOBS_ACTIVE = Gauge("parley_egress_jobs_active", "Egresses running on this node, by kind.", ("kind",))
#: Egresses that ended, by kind and final status (COMPLETE, FAILED, ABORTED, LIMIT_REACHED).
JOBS_ENDED = Counter("parley_egress_jobs", "Egresses that ended on this node, by kind and status.", ("kind", "status"))
#: Starts refused because no node had the CPUs the cost model asks for.
STARTS_REFUSED = Counter("parley_egress_starts_refused", "Starts refused for lack of capacity (RESOURCE_EXHAUSTED).")
#: Ray CPUs reserved by this node's running egresses.
CPUS_RESERVED = Gauge("parley_egress_cpus_reserved", "Ray CPUs reserved by the egresses running on this node.")
#: Seconds of media written, by kind.
MEDIA_SECONDS = Counter("parley_egress_media_seconds", "Seconds of media recorded, by kind.", ("kind",))
#: Composite frames skipped because the recorder fell behind real time.
DROPPED_FRAMES = Counter("parley_egress_dropped_frames", "Video frames a composite skipped to keep up with real time.")
#: Reports to control that failed (they are retried).
REPORT_FAILURES = Counter("parley_egress_report_failures", "Reports to control that failed and were retried.")
