"""Dynacast: a publisher sends only the simulcast layers someone receives.

The SFU tells the publisher which layers of its track its subscribers need (each subscriber's
layer as it would choose it were every layer on); the publisher pauses the others, which saves
its uplink and its encoder's CPU. A layer someone asks for again is resumed at once; a layer
nobody needs any more is paused only after ``PAUSE_AFTER`` seconds, so that a view resized
back and forth does not make the publisher's encoder start and stop. The bottom layer is never
paused: a new subscriber starts on it at once, and it costs little."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Protocol

from ._layers import Layer, Preference, choose

#: Seconds a layer nobody needs keeps being sent before the publisher is told to pause it.
PAUSE_AFTER = 3.0


class Subscriber(Protocol):
    paused: bool
    preference: Preference


def needed_layers(layers: Iterable[Layer], subscribers: Iterable[Subscriber], offered: Iterable[str] = ()) -> set[str]:
    """The RIDs the subscribers need: every layer while the size of one is unknown (one the
    offer names but that never came, as the top layer before the publisher's bandwidth
    estimate allows it, included: paused, it could never be asked for again)."""
    known = list(layers)
    sized = sorted((layer for layer in known if layer.height), key=lambda layer: layer.height)
    everything = {layer.rid for layer in known} | set(offered)
    if len(sized) < len(everything) or not sized:
        return everything
    needed = {sized[0].rid}
    for subscriber in subscribers:
        if not subscriber.paused:
            # As it would choose were every layer on: a paused layer it wants is resumed.
            chosen = choose(sized, subscriber.preference, now=float("inf"), active_only=False)
            if chosen is not None:
                needed.add(chosen.rid)
    return needed


class Dynacast:
    """Tells one track's publisher (``notify``: the RIDs to send) whenever what its
    subscribers need changes (``update``, called on any change of layers or subscribers)."""

    def __init__(
        self,
        layers: Callable[[], Iterable[Layer]],
        subscribers: Callable[[], Iterable[Subscriber]],
        notify: Callable[[list[str]], None],
        *,
        offered: Iterable[str] = (),
        pause_after: float = PAUSE_AFTER,
    ) -> None:
        self._offered = list(offered)
        self._layers = layers
        self._subscribers = subscribers
        self._notify = notify
        self._pause_after = pause_after
        #: What the publisher was last told (None: nothing yet, it sends every layer).
        self.sent: set[str] | None = None
        self._pause: asyncio.TimerHandle | None = None

    def update(self) -> None:
        needed = needed_layers(self._layers(), self._subscribers(), self._offered)
        current = self.sent if self.sent is not None else {layer.rid for layer in self._layers()} | set(self._offered)
        if needed == current:
            self._cancel()
            return
        if needed - current:  # someone needs a paused layer: resume it now
            self._send(needed)
            return
        if self._pause is None:  # only fewer: pause once that has lasted
            self._pause = asyncio.get_running_loop().call_later(self._pause_after, self._paused)

    def _paused(self) -> None:
        self._pause = None
        needed = needed_layers(self._layers(), self._subscribers(), self._offered)
        if needed != self.sent:
            self._send(needed)

    def _send(self, needed: set[str]) -> None:
        self._cancel()
        self.sent = needed
        self._notify(sorted(needed))

    def _cancel(self) -> None:
        if self._pause is not None:
            self._pause.cancel()
            self._pause = None

    def close(self) -> None:
        self._cancel()
