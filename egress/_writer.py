"""Encoders and muxers that stream a recording into a sink, never seeking back.

``MediaWriter`` encodes: H.264 + AAC in fragmented MP4 (a fragment per keyframe, every two
seconds, so a file cut anywhere plays up to its last complete fragment), or Opus in Ogg (a page
every second). ``PassthroughWriter`` muxes frames that are already encoded (a participant's VP8
or Opus track, as the SFU forwards them) without decoding them.
"""

from __future__ import annotations

import logging
import struct
from fractions import Fraction
from typing import TYPE_CHECKING, Any, cast

import av
import numpy as np

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import OutputContainer
    from av.stream import Stream
    from av.video.stream import VideoStream

    from ._sink import Sink

__all__ = ["MediaWriter", "PassthroughWriter"]

logger = logging.getLogger(__name__)

#: Fragmented MP4: an empty moov first, then a moof + mdat per keyframe, with offsets relative to
#: the moof (what MSE and every player expect). Nothing is written back at the end.
MP4_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}
#: An Ogg page at least every second (in microseconds), handed to the sink as soon as it is made.
OGG_OPTIONS = {"page_duration": "1000000", "flush_packets": "1"}
GOP_SECONDS = 2
VIDEO_CLOCK = 90_000
OPUS_CLOCK = 48_000
#: One 20 ms Opus frame, in samples of its 48 kHz clock.
OPUS_FRAME = 960
#: A 20 ms Opus frame of digital silence (TOC 0xF8: CELT, full band, 20 ms, one frame).
OPUS_SILENCE = b"\xf8\xff\xfe"


class _SinkIO:
    """What PyAV sees of a sink: ``write`` alone. Without ``seek`` the muxer never seeks; without
    ``close`` PyAV does not close the sink, which its owner closes to learn where the bytes went."""

    def __init__(self, sink: Sink) -> None:
        self.write = sink.write


def _layout(channels: int) -> str:
    if channels not in (1, 2):
        raise ValueError(f"{channels} channels: only mono and stereo are supported")
    return "mono" if channels == 1 else "stereo"


class MediaWriter:
    """Encodes composited video and mixed audio into a streamed container. Build one with
    ``MediaWriter.mp4`` or ``MediaWriter.ogg``; call ``close`` once at the end."""

    def __init__(
        self,
        container: OutputContainer,
        video: VideoStream | None,
        audio: AudioStream,
        *,
        fps: int,
        sample_rate: int,
        channels: int,
    ) -> None:
        self._container = container
        self._video = video
        self._audio = audio
        self._fps = fps
        self._video_time_base = Fraction(1, fps)
        self._audio_time_base = Fraction(1, sample_rate)
        self.sample_rate = sample_rate
        self.channels = channels
        self._layout = _layout(channels)
        self._frame_size = audio.codec_context.frame_size or 1024
        self._pending = np.zeros((channels, 0), np.int16)
        self._pending_start = 0  # timeline position of _pending[:, 0]
        self._audio_end = 0  # samples encoded or pending
        self._audio_started = False
        self._last_index = -1
        self._closed = False

    @classmethod
    def mp4(
        cls,
        sink: Sink,
        width: int,
        height: int,
        fps: int,
        video_bitrate: int,
        audio_bitrate: int = 128_000,
        sample_rate: int = 48000,
        channels: int = 2,
        *,
        preset: str = "veryfast",
        threads: int = 0,
    ) -> MediaWriter:
        """H.264 (libx264, high profile, a keyframe every two seconds) + AAC in fragmented MP4.

        ``threads`` is libx264's thread count (0: as many as it likes, frame-threaded).
        """
        container = av.open(cast(Any, _SinkIO(sink)), mode="w", format="mp4", options=MP4_OPTIONS)
        video = container.add_stream("libx264", rate=fps)
        context = video.codec_context
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.bit_rate = video_bitrate
        context.gop_size = GOP_SECONDS * fps
        context.time_base = Fraction(1, fps)
        context.thread_count = threads
        context.thread_type = "FRAME"
        # No B-frames: a fragmented MP4 starts every track at decode time zero, so reordered
        # frames would start the video two frames after the audio (no edit list fixes that up).
        context.options = {"preset": preset, "profile": "high", "bf": "0"}
        audio = container.add_stream("aac", rate=sample_rate)
        audio.codec_context.layout = _layout(channels)
        audio.codec_context.bit_rate = audio_bitrate
        audio.codec_context.time_base = Fraction(1, sample_rate)
        audio.codec_context.open()  # learns the frame size (1024 for AAC)
        return cls(container, video, audio, fps=fps, sample_rate=sample_rate, channels=channels)

    @classmethod
    def ogg(cls, sink: Sink, sample_rate: int = 48000, channels: int = 2, bitrate: int = 32_000) -> MediaWriter:
        """Opus (libopus, 20 ms frames) in Ogg, a page every second."""
        container = av.open(cast(Any, _SinkIO(sink)), mode="w", format="ogg", options=OGG_OPTIONS)
        audio = container.add_stream("libopus", rate=sample_rate)
        audio.codec_context.layout = _layout(channels)
        audio.codec_context.bit_rate = bitrate
        audio.codec_context.time_base = Fraction(1, sample_rate)
        audio.codec_context.open()
        return cls(container, None, audio, fps=1, sample_rate=sample_rate, channels=channels)

    @property
    def duration(self) -> float:
        """Seconds of media written (the longer of the video and the audio)."""
        video = (self._last_index + 1) / self._fps if self._video is not None else 0.0
        return max(video, self._audio_end / self.sample_rate)

    def write_video(self, frame: av.VideoFrame, index: int) -> None:
        """Encodes ``frame`` as frame number ``index`` of the 1/fps timeline; an index that does
        not move forward is dropped (an encoder refuses time going back)."""
        if self._video is None:
            raise ValueError("this writer has no video stream")
        if index <= self._last_index:
            logger.debug("video frame %d dropped: %d already written", index, self._last_index)
            return
        self._last_index = index
        frame.pts = index
        frame.time_base = self._video_time_base
        self._mux_video(self._video.encode(frame))

    def _mux_video(self, packets: list[av.Packet[Any]]) -> None:
        for packet in packets:
            # Each frame lasts one frame period: without it the fragmented MP4 muxer guesses the
            # first sample's duration (wrong: the second frame then comes late).
            packet.duration = round(1 / (self._fps * packet.time_base)) if packet.time_base else 1
        self._container.mux(packets)

    def write_audio(self, samples: np.ndarray, start: int) -> None:
        """Encodes int16 ``samples`` of shape (channels, n) placed at ``start`` (in samples).

        A gap before ``start`` is filled with silence, and samples before what was already
        written are dropped: the audio track stays continuous.
        """
        if samples.dtype != np.int16 or samples.ndim != 2 or samples.shape[0] != self.channels:
            expected = f"int16 samples of shape ({self.channels}, n)"
            raise ValueError(f"expected {expected}, got {samples.dtype} {samples.shape}")
        if not self._audio_started:
            self._audio_started = True
            self._pending_start = self._audio_end = start
        if start > self._audio_end:
            gap = np.zeros((self.channels, start - self._audio_end), np.int16)
            samples = np.concatenate([gap, samples], axis=1)
        elif start < self._audio_end:
            samples = samples[:, self._audio_end - start :]
        if samples.shape[1] == 0:
            return
        # A copy either way: the caller may reuse its buffer.
        self._pending = np.concatenate([self._pending, samples], axis=1) if self._pending.size else samples.copy()
        self._audio_end += samples.shape[1]
        self._encode_pending(final=False)

    def close(self) -> None:
        """Encodes what is pending, flushes the encoders and ends the container (the sink stays
        open: its owner closes it)."""
        if self._closed:
            return
        self._closed = True
        self._encode_pending(final=True)
        self._container.mux(self._audio.encode(None))
        if self._video is not None:
            self._mux_video(self._video.encode(None))
        self._container.close()

    def _encode_pending(self, *, final: bool) -> None:
        size = self._frame_size
        count = self._pending.shape[1]
        end = count if final else count - count % size
        for offset in range(0, end, size):
            chunk = self._pending[:, offset : offset + size]
            if chunk.shape[1] < size:  # the encoders want whole frames, the last one included
                chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16p", layout=self._layout)
            frame.sample_rate = self.sample_rate
            frame.pts = self._pending_start + offset
            frame.time_base = self._audio_time_base
            self._container.mux(self._audio.encode(frame))
        self._pending = self._pending[:, end:]
        self._pending_start += end


class PassthroughWriter:
    """Muxes encoded frames (one track) without decoding them: VP8 in WebM or Opus in Ogg."""

    def __init__(self, container: OutputContainer, stream: Stream, clock: int, *, fill_gaps: bool = False) -> None:
        self._container = container
        self._stream = stream
        self._time_base = Fraction(1, clock)
        self._first_pts: int | None = None
        self._last_pts = -1
        self._fill_gaps = fill_gaps
        self._closed = False

    @classmethod
    def webm(cls, sink: Sink, width: int, height: int) -> PassthroughWriter:
        """VP8 frames with a 90 kHz clock (RTP's) in WebM."""
        container = av.open(cast(Any, _SinkIO(sink)), mode="w", format="webm", options={"flush_packets": "1"})
        stream = container.add_mux_stream("vp8", width=width, height=height, time_base=Fraction(1, VIDEO_CLOCK))
        return cls(container, stream, VIDEO_CLOCK)

    @classmethod
    def ogg(cls, sink: Sink, channels: int = 2, *, fill_gaps: bool = False) -> PassthroughWriter:
        """Opus packets with a 48 kHz clock in Ogg (WebRTC's Opus is ``opus/48000/2``).

        With ``fill_gaps``, stretches where the sender sent nothing (a muted or stopped
        microphone; the RTP clock runs on) are filled with Opus silence frames: players and
        decoders ignore granule gaps and would otherwise pull later speech earlier, off the
        meeting's time."""
        container = av.open(cast(Any, _SinkIO(sink)), mode="w", format="ogg", options=OGG_OPTIONS)
        # The Ogg muxer needs the OpusHead as the stream's extradata, and only a codec context
        # carries one: the encoder's context is opened here (never used), then given the head
        # of a stream without pre-skip, which the muxer copies into the first page.
        stream = container.add_stream("libopus", rate=OPUS_CLOCK)
        stream.codec_context.layout = _layout(channels)
        stream.codec_context.time_base = Fraction(1, OPUS_CLOCK)
        stream.time_base = Fraction(1, OPUS_CLOCK)
        stream.codec_context.open()
        stream.codec_context.extradata = _opus_head(channels)
        return cls(container, stream, OPUS_CLOCK, fill_gaps=fill_gaps)

    def write(self, payload: bytes, pts: int, keyframe: bool) -> None:
        """Muxes one encoded frame at ``pts`` (the codec's clock; the first frame's pts becomes
        zero). A frame whose pts does not move forward is dropped."""
        if self._first_pts is None:
            self._first_pts = pts
        position = pts - self._first_pts
        if position <= self._last_pts:
            logger.debug("passthrough frame at %d dropped: %d already written", position, self._last_pts)
            return
        if self._fill_gaps and self._last_pts >= 0:
            # WebRTC sends 20 ms Opus frames: a gap of more than one and a half is silence.
            for silent in range(self._last_pts + OPUS_FRAME, position - OPUS_FRAME // 2, OPUS_FRAME):
                self._mux(OPUS_SILENCE, silent, True)
        self._last_pts = position
        self._mux(payload, position, keyframe)

    def _mux(self, payload: bytes, position: int, keyframe: bool) -> None:
        packet = av.Packet(payload)
        packet.stream = self._stream
        packet.time_base = self._time_base
        packet.pts = packet.dts = position
        packet.is_keyframe = keyframe
        self._container.mux(packet)

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the last one written."""
        return max(self._last_pts, 0) * float(self._time_base)

    def close(self) -> None:
        """Ends the container (the sink stays open: its owner closes it)."""
        if not self._closed:
            self._closed = True
            self._container.close()


def _opus_head(channels: int) -> bytes:
    """The Ogg Opus identification header (RFC 7845 §5.1): version 1, no pre-skip, 48 kHz,
    no gain, channel mapping family 0 (mono or stereo)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, 0, OPUS_CLOCK, 0, 0)
