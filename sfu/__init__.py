"""Parley's SFU: WebRTC rooms whose media it forwards at the RTP level, never decoding it."""

from ._media import record_forwarding_delays
from ._server import SERVICE_NAMES, SfuServer
from ._settings import SfuSettings
from ._turn import Coturn, CoturnMissing, turn_credentials
from ._workers import SfuWorkers, worker_count

__all__ = [
    "SERVICE_NAMES",
    "Coturn",
    "CoturnMissing",
    "SfuServer",
    "SfuSettings",
    "SfuWorkers",
    "record_forwarding_delays",
    "turn_credentials",
    "worker_count",
]
