"""Decoding media to the 16 kHz mono float32 samples Whisper wants, from local files, file
objects or S3 objects read through ranged GETs (no full local copy).

Everything here is synchronous and CPU-bound; the Ray actors call it from worker threads.
"""

from __future__ import annotations

import io
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO

import av
import av.error
import numpy as np
import numpy.typing as npt
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer
    from av.audio.frame import AudioFrame
    from av.audio.stream import AudioStream
    from av.container import InputContainer
    from types_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

#: Sample rate of :func:`decode_audio`'s output, the rate Whisper models are trained on.
SAMPLE_RATE = 16000

#: How much media time passes between two ``on_progress`` calls: often enough for a progress
#: bar, rare enough that a callback doing I/O (a status update) costs nothing noticeable.
PROGRESS_INTERVAL_S = 5.0

#: Buffer of PyAV's custom I/O (what one ``read`` asks for); larger than PyAV's 32 KiB default
#: so that slow sources (S3) see fewer, larger reads.
_AVIO_BUFFER_SIZE = 1 << 18

#: Error codes S3 (and compatible stores) answer for a missing object or bucket. HEAD responses
#: have no body, so a missing key only shows as the bare status code "404".
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NotFound"})


class MediaError(Exception):
    """The input cannot be turned into audio; the message is meant for the end user."""


def decode_audio(
    source: str | os.PathLike[str] | BinaryIO,
    *,
    on_progress: Callable[[float], None] | None = None,
) -> npt.NDArray[np.float32]:
    """Decode the first audio stream of a media file to 16 kHz mono float32 samples.

    Any container and codec PyAV reads works (WAV, WebM/Opus, Ogg/Vorbis/Opus, MP4/AAC, MP3,
    video files with an audio track). Only the audio stream is demuxed and decoded; video
    packets are skipped without decoding.

    Args:
        source: A path to a local file, or a readable binary file object (seekable for containers
            that need seeking, e.g. MP4 with its index at the end; :func:`open_s3_object` gives
            one for S3). A file object is neither closed nor rewound.
        on_progress: Called now and then (about every :data:`PROGRESS_INTERVAL_S` seconds of
            media) with the fraction decoded so far, in ``[0, 1]``, when the duration is known;
            called once with ``1.0`` at the end in any case. Exceptions it raises propagate,
            which lets a caller abort a long decode.

    Returns:
        A 1-D, C-contiguous float32 array at :data:`SAMPLE_RATE`, values in about ``[-1, 1]``.
        It is empty when the audio stream holds no samples.

    Raises:
        MediaError: The input is empty, is not media PyAV can read, has no audio stream, or
            its audio cannot be decoded.
        FileNotFoundError: ``source`` is a path that does not exist.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.stat(path).st_size == 0:
            raise MediaError("the file is empty")
        # Opened here rather than handed to FFmpeg as a name: FFmpeg would interpret a string
        # as a URL ("http://…", "concat:…"), which an uploaded name must never be.
        with open(path, "rb") as file:
            return _decode_file(file, on_progress)
    if _is_empty(source):
        raise MediaError("the file is empty")
    return _decode_file(source, on_progress)


def _is_empty(file: BinaryIO) -> bool:
    """Whether a seekable file object has no bytes left; unknown (False) for unseekable ones."""
    try:
        if not file.seekable():
            return False
        position = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(position)
    except (OSError, ValueError):
        return False
    return end <= position


def _decode_file(file: BinaryIO, on_progress: Callable[[float], None] | None) -> npt.NDArray[np.float32]:
    try:
        container = av.open(file, mode="r", metadata_errors="replace", buffer_size=_AVIO_BUFFER_SIZE)
    except av.error.FFmpegError as exc:
        raise MediaError(f"not a media file PyAV can read: {_describe(exc)}") from exc
    with container:
        # FFmpeg's "tty" demuxer (ANSI art) claims any file named *.txt, *.asc, *.nfo… by its
        # extension alone and presents it as a video stream; for a user that is a text file.
        if container.format.name == "tty":
            raise MediaError("not a media file PyAV can read: it is a text file")
        if not container.streams.audio:
            raise MediaError("the file holds no audio stream")
        stream = container.streams.audio[0]
        return _decode_stream(container, stream, on_progress)


def _decode_stream(
    container: InputContainer, stream: AudioStream, on_progress: Callable[[float], None] | None
) -> npt.NDArray[np.float32]:
    duration = _duration(container, stream)
    start = float(stream.start_time * stream.time_base) if stream.start_time and stream.time_base else 0.0
    chunks: list[npt.NDArray[np.float32]] = []
    decoded_s = 0.0  # output samples so far, in seconds: the fallback clock for frames without pts
    last_report = 0.0
    resampler: av.AudioResampler | None = None
    setup: tuple[str, str, int] | None = None

    def collect(frames: list[AudioFrame]) -> None:
        nonlocal decoded_s
        for out in frames:
            # flt + mono is packed with one plane: shape (1, samples).
            samples = np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1)
            chunks.append(samples)
            decoded_s += samples.size / SAMPLE_RATE

    try:
        for frame in container.decode(stream):
            # A chained Ogg, or an MP3 whose rate changes mid-file, changes the input format; an
            # AudioResampler is bound to its first frame's format, so drain it and start another.
            frame_setup = (frame.format.name, frame.layout.name, frame.sample_rate)
            if frame_setup != setup:
                if resampler is not None:
                    collect(resampler.resample(None))
                resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
                setup = frame_setup
            assert resampler is not None
            collect(resampler.resample(frame))
            if on_progress is not None and duration:
                position = frame.time - start if frame.time is not None else decoded_s
                if position - last_report >= PROGRESS_INTERVAL_S:
                    last_report = position
                    on_progress(min(max(position / duration, 0.0), 1.0))
        if resampler is not None:
            collect(resampler.resample(None))
    except av.error.FFmpegError as exc:
        raise MediaError(f"the audio stream cannot be decoded: {_describe(exc)}") from exc

    if on_progress is not None:
        on_progress(1.0)
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    logger.debug(
        "decoded %s/%s audio: %.2f s at %d Hz",
        container.format.name,
        stream.codec_context.name,
        audio.size / SAMPLE_RATE,
        SAMPLE_RATE,
    )
    return np.ascontiguousarray(audio, dtype=np.float32)


def _duration(container: InputContainer, stream: AudioStream) -> float | None:
    """The media's duration in seconds when the container states one (WebM often only at the
    container level, streamed recordings not at all)."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _describe(exc: av.error.FFmpegError) -> str:
    # FFmpegError's str() carries errno and the file name ("[Errno …] Invalid data …: '<none>'"),
    # noise to a user; its strerror is the readable part.
    return exc.strerror or str(exc)


class S3RangeReader(io.RawIOBase):
    """A read-only, seekable raw file over one S3 object, fetched with ranged GETs.

    Reads are served from aligned blocks of ``block_size`` bytes, of which the last
    ``cached_blocks`` stay in memory: demuxers jump between an MP4's index at the end and its
    data at the start, and without the cache each jump back would fetch the same bytes again.
    Every GET names the ETag seen by ``head_object`` (``IfMatch``) so an object overwritten
    while it is read fails instead of yielding a mix of two versions.

    Attributes:
        size: The object's length in bytes.
        bytes_fetched: Bytes received from S3 so far.
        requests: GET requests made so far.
    """

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        block_size: int = 1 << 20,
        cached_blocks: int = 4,
    ) -> None:
        """Look the object up (one ``head_object`` call).

        Args:
            client: A boto3 S3 client.
            bucket: The bucket's name.
            key: The object's key.
            block_size: Bytes per ranged GET (and cache block).
            cached_blocks: How many blocks to keep; at least one.

        Raises:
            MediaError: The object (or its bucket) does not exist.
        """
        super().__init__()
        if block_size <= 0 or cached_blocks <= 0:
            raise ValueError("block_size and cached_blocks must be positive")
        self._client = client
        self._bucket = bucket
        self._key = key
        self._block_size = block_size
        self._cached_blocks = cached_blocks
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._position = 0
        self.bytes_fetched = 0
        self.requests = 0
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise MediaError(f"{self.url} does not exist") from exc
            raise
        self.size: int = head["ContentLength"]
        self._etag: str | None = head.get("ETag")

    @property
    def url(self) -> str:
        """``s3://bucket/key``, for messages."""
        return f"s3://{self._bucket}/{self._key}"

    @property
    def name(self) -> str:
        """The object's URL; FFmpeg shows it in its messages as the input's name."""
        return self.url

    def readable(self) -> bool:
        """Always True (while open)."""
        self._check_open()
        return True

    def seekable(self) -> bool:
        """Always True (while open)."""
        self._check_open()
        return True

    def tell(self) -> int:
        """The current position in bytes."""
        self._check_open()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """Move the position; costs nothing until the next read.

        Args:
            offset: Bytes relative to ``whence``.
            whence: ``io.SEEK_SET``, ``io.SEEK_CUR`` or ``io.SEEK_END``.

        Returns:
            The new absolute position (past the end is allowed; reads there return nothing).
        """
        self._check_open()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence: {whence!r}")
        if position < 0:
            raise OSError(f"negative seek position {position}")
        self._position = position
        return position

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        """Read up to ``len(buffer)`` bytes at the current position into ``buffer``.

        Returns:
            The number of bytes read; 0 at the end of the object.
        """
        self._check_open()
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self.size - self._position)
        done = 0
        while done < wanted:
            index, offset = divmod(self._position, self._block_size)
            block = self._block(index)
            count = min(len(block) - offset, wanted - done)
            if count <= 0:  # the object shrank under us; IfMatch should have caught that
                break
            view[done : done + count] = block[offset : offset + count]
            done += count
            self._position += count
        return done

    def close(self) -> None:
        """Drop the cached blocks; the client stays open (it belongs to the caller)."""
        self._blocks.clear()
        super().close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _block(self, index: int) -> bytes:
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        first = index * self._block_size
        last = min(first + self._block_size, self.size) - 1
        byte_range = f"bytes={first}-{last}"
        try:
            if self._etag:
                response = self._client.get_object(
                    Bucket=self._bucket, Key=self._key, Range=byte_range, IfMatch=self._etag
                )
            else:
                response = self._client.get_object(Bucket=self._bucket, Key=self._key, Range=byte_range)
        except ClientError as exc:
            code = _error_code(exc)
            if code in _MISSING_CODES:
                raise MediaError(f"{self.url} does not exist") from exc
            if code in {"412", "PreconditionFailed"}:
                raise MediaError(f"{self.url} changed while it was being read") from exc
            raise
        with response["Body"] as body:
            block = body.read()
        self.requests += 1
        self.bytes_fetched += len(block)
        self._blocks[index] = block
        while len(self._blocks) > self._cached_blocks:
            self._blocks.popitem(last=False)
        return block


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def open_s3_object(client: S3Client, bucket: str, key: str) -> io.BufferedReader:
    """Open an S3 object as a buffered, seekable binary file for :func:`decode_audio`.

    Bytes are fetched on demand with ranged GETs, so containers that need seeking (MP4 with
    its index at the end) decode without a full local copy. The reader's counters are at
    ``.raw`` (an :class:`S3RangeReader`).

    Args:
        client: A boto3 S3 client.
        bucket: The bucket's name.
        key: The object's key.

    Returns:
        A :class:`io.BufferedReader` (a ``BinaryIO``); close it when done.

    Raises:
        MediaError: The object does not exist.
    """
    return io.BufferedReader(S3RangeReader(client, bucket, key), buffer_size=1 << 20)
