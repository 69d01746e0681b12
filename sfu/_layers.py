"""Simulcast layers of a published video track, and which one a subscriber gets.

A browser publishing simulcast sends up to three encodings of the same camera (for example
320×180, 640×360 and 1280×720), each on its own SSRC and named by its RID. The SFU learns
each layer's size from its keyframes and forwards to each subscriber the smallest layer that
fills the size it shows the video at (LiveKit's rule: a layer within 20 % of it will do), no
higher than the quality it allows itself."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: A layer this much smaller than the wanted size is still good enough.
SIZE_TOLERANCE = 0.8
#: A layer that sent nothing for this long is stopped (the publisher's encoder dropped it).
ACTIVE_WITHIN = 1.0


@dataclass(slots=True)
class Layer:
    """One simulcast encoding of a track."""

    ssrc: int
    rid: str
    width: int = 0
    height: int = 0
    #: ``time.perf_counter()`` of its last packet.
    last_seen: float = 0.0
    #: Payload bytes received.
    bytes: int = 0
    #: Bits per second of payload, smoothed (kept while the layer is paused: what resuming it costs).
    bitrate: float = 0.0
    #: ``bytes`` when ``bitrate`` was last measured.
    measured_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Preference:
    """What a subscriber wants of a video track: the size it shows it at (0: no preference,
    the best layer) and the most layers up it allows (0: no cap; 1: the lowest only...)."""

    width: int = 0
    height: int = 0
    max_layers: int = 0


def choose(layers: Iterable[Layer], preference: Preference, now: float, *, active_only: bool = True) -> Layer | None:
    """The layer to forward: of the active layers (every layer, unless ``active_only``) whose
    size is known (all of them while no size is), the smallest that fills the wanted size,
    else the biggest allowed."""
    active = [layer for layer in layers if not active_only or now - layer.last_seen <= ACTIVE_WITHIN]
    sized = sorted((layer for layer in active if layer.height), key=lambda layer: (layer.height, layer.width))
    if not sized:
        return active[0] if active else None
    allowed = sized[: preference.max_layers] if preference.max_layers else sized
    if preference.width or preference.height:
        for layer in allowed:
            if layer.width >= SIZE_TOLERANCE * preference.width and layer.height >= SIZE_TOLERANCE * preference.height:
                return layer
    return allowed[-1]
