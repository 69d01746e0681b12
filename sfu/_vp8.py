"""VP8 as the SFU sees it without decoding: the RTP payload descriptor (RFC 7741), which it
reads to find keyframes and rewrites so that a subscriber switched between simulcast layers
sees one stream, and the frame size a keyframe announces (RFC 6386)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Descriptor:
    """Where a packet's picture id and TL0PICIDX are, and their values (-1: absent)."""

    keyframe_start: bool
    picture_id: int
    #: 7 or 15; 0 without a picture id.
    picture_id_bits: int
    picture_id_at: int
    tl0picidx: int
    tl0picidx_at: int
    #: Where the VP8 frame itself starts.
    payload_at: int


def parse(payload: bytes) -> Descriptor | None:
    """The descriptor of an RTP payload; None when it is too short to hold one."""
    if not payload:
        return None
    first = payload[0]
    offset = 1
    picture_id = tl0 = -1
    bits = picture_id_at = tl0_at = 0
    if first & 0x80:  # X: an extension byte follows
        if len(payload) < 2:
            return None
        ext = payload[1]
        offset = 2
        if ext & 0x80:  # I: picture id, 7 or 15 bits
            if len(payload) <= offset:
                return None
            picture_id_at = offset
            if payload[offset] & 0x80:
                if len(payload) <= offset + 1:
                    return None
                picture_id = ((payload[offset] & 0x7F) << 8) | payload[offset + 1]
                bits, offset = 15, offset + 2
            else:
                picture_id = payload[offset]
                bits, offset = 7, offset + 1
        if ext & 0x40:  # L: TL0PICIDX
            if len(payload) <= offset:
                return None
            tl0, tl0_at = payload[offset], offset
            offset += 1
        if ext & 0x30:  # T or K: TID / KEYIDX byte
            offset += 1
    # S bit set and partition 0: the frame starts here; its tag's P bit is 0 on keyframes.
    starts = bool(first & 0x10) and not first & 0x07
    keyframe_start = starts and len(payload) > offset and not payload[offset] & 0x01
    return Descriptor(keyframe_start, picture_id, bits, picture_id_at, tl0, tl0_at, offset)


def keyframe_size(payload: bytes, descriptor: Descriptor) -> tuple[int, int] | None:
    """The width and height a keyframe's first packet announces (its frame header: a 3-byte
    tag, the start code 9d 01 2a, then 14-bit width and height)."""
    at = descriptor.payload_at
    header = payload[at : at + 10]
    if not descriptor.keyframe_start or len(header) < 10 or header[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(header[6:8], "little") & 0x3FFF, int.from_bytes(header[8:10], "little") & 0x3FFF


def rewrite(payload: bytes, descriptor: Descriptor, picture_id: int, tl0picidx: int) -> bytes:
    """The payload with its picture id and TL0PICIDX replaced (each only if present), in the
    width the packet already uses."""
    out = bytearray(payload)
    if descriptor.picture_id_bits == 15:
        out[descriptor.picture_id_at] = 0x80 | ((picture_id >> 8) & 0x7F)
        out[descriptor.picture_id_at + 1] = picture_id & 0xFF
    elif descriptor.picture_id_bits == 7:
        out[descriptor.picture_id_at] = picture_id & 0x7F
    if descriptor.tl0picidx >= 0:
        out[descriptor.tl0picidx_at] = tl0picidx & 0xFF
    return bytes(out)


class Renumbering:
    """Picture ids and TL0PICIDX continued across the runs of one subscriber's stream: a run
    (a layer switch, a publisher restart) starts one picture after where the last ended, so
    the subscriber's decoder never sees them go back (it would drop the frames as old)."""

    __slots__ = ("_last_pid", "_last_tl0", "_pid_offset", "_started", "_tl0_offset")

    def __init__(self) -> None:
        self._pid_offset = self._tl0_offset = 0
        self._last_pid = self._last_tl0 = -1
        self._started = False

    def start_run(self, first: Descriptor) -> None:
        """The next packets are a new run, whose first packet is ``first``."""
        if self._started and first.picture_id >= 0 and self._last_pid >= 0:
            self._pid_offset = self._last_pid + 1 - first.picture_id
        if self._started and first.tl0picidx >= 0 and self._last_tl0 >= 0:
            self._tl0_offset = self._last_tl0 + 1 - first.tl0picidx
        self._started = True

    def apply(self, payload: bytes, descriptor: Descriptor) -> bytes:
        """The packet's payload, renumbered (the same bytes when nothing changes)."""
        mask = 0x7FFF if descriptor.picture_id_bits == 15 else 0x7F
        pid = (descriptor.picture_id + self._pid_offset) & mask if descriptor.picture_id >= 0 else -1
        tl0 = (descriptor.tl0picidx + self._tl0_offset) & 0xFF if descriptor.tl0picidx >= 0 else -1
        if pid >= 0:
            self._last_pid = pid
        if tl0 >= 0:
            self._last_tl0 = tl0
        if pid == descriptor.picture_id and tl0 == descriptor.tl0picidx:
            return payload
        return rewrite(payload, descriptor, pid, tl0)
