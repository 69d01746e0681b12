"""ai._audio: decoding real speech in the containers recordings come in, bad input, and
reading straight from S3 with ranged GETs."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pytest

from ai._audio import SAMPLE_RATE, MediaError, S3RangeReader, decode_audio, open_s3_object
from tests.ai.media import encode_as, read_wav, speak, write_video_only

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

SENTENCE = "The quarterly budget review starts at nine tomorrow morning, please bring the figures."

#: (muxer, encoder, file suffix) of the formats uploads and recordings arrive in.
AUDIO_FORMATS = [
    pytest.param("webm", "libopus", ".webm", id="webm-opus"),
    pytest.param("ogg", "vorbis", ".ogg", id="ogg-vorbis"),
    pytest.param("ogg", "libopus", ".opus", id="ogg-opus"),
    pytest.param("mp4", "aac", ".m4a", id="mp4-aac"),
    pytest.param("mp3", "libmp3lame", ".mp3", id="mp3"),
    pytest.param("matroska", "flac", ".mka", id="mka-flac"),
]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def speech_wav(media_dir: Path) -> Path:
    return speak(SENTENCE, media_dir / "speech.wav")


def envelope(samples: npt.NDArray[np.float32], rate: int, *, window_s: float = 0.02) -> npt.NDArray[np.float64]:
    """RMS energy per ``window_s`` window: comparable across sample rates and lossy codecs."""
    window = round(rate * window_s)
    count = len(samples) // window
    frames = samples[: count * window].astype(np.float64).reshape(count, window)
    rms: npt.NDArray[np.float64] = np.sqrt((frames**2).mean(axis=1))
    return rms


def assert_same_speech(decoded: npt.NDArray[np.float32], reference: Path) -> None:
    expected, rate = read_wav(reference)
    assert decoded.dtype == np.float32 and decoded.ndim == 1 and decoded.flags.c_contiguous
    assert abs(len(decoded) / SAMPLE_RATE - len(expected) / rate) < 0.1
    ours, theirs = envelope(decoded, SAMPLE_RATE), envelope(expected, rate)
    count = min(len(ours), len(theirs))
    correlation = np.corrcoef(ours[:count], theirs[:count])[0, 1]
    assert correlation > 0.95, correlation
    # Same loudness: the resampler must not scale or clip (espeak-ng peaks well below full scale).
    assert 0.8 < float(np.abs(decoded).max()) / float(np.abs(expected).max()) < 1.25


def test_decode_wav(speech_wav: Path) -> None:
    audio = decode_audio(speech_wav)

    expected, rate = read_wav(speech_wav)
    assert abs(len(audio) - len(expected) * SAMPLE_RATE / rate) <= 32  # the resampler's edges
    assert_same_speech(audio, speech_wav)


@pytest.mark.parametrize(("container", "codec", "suffix"), AUDIO_FORMATS)
def test_decode_formats(speech_wav: Path, media_dir: Path, container: str, codec: str, suffix: str) -> None:
    encoded = encode_as(speech_wav, media_dir / f"speech-{codec}{suffix}", container, codec)

    audio = decode_audio(encoded)

    assert_same_speech(audio, speech_wav)


@pytest.mark.parametrize(
    ("container", "video_codec", "suffix"), [("mp4", "mpeg4", ".mp4"), ("webm", "libvpx", ".webm")]
)
def test_decode_video_with_audio(
    speech_wav: Path, media_dir: Path, container: str, video_codec: str, suffix: str
) -> None:
    audio_codec = "aac" if container == "mp4" else "libopus"
    video = encode_as(speech_wav, media_dir / f"talk{suffix}", container, audio_codec, video_codec=video_codec)

    assert_same_speech(decode_audio(video), speech_wav)


def test_decode_file_object_and_pathlike(speech_wav: Path, media_dir: Path) -> None:
    encoded = encode_as(speech_wav, media_dir / "object.m4a", "mp4", "aac")
    from_path = decode_audio(str(encoded))

    with encoded.open("rb") as file:
        from_file = decode_audio(file)
        assert not file.closed  # the caller's object stays the caller's

    assert np.array_equal(from_path, from_file)
    assert np.array_equal(from_path, decode_audio(io.BytesIO(encoded.read_bytes())))


def test_progress_is_reported_now_and_then(media_dir: Path) -> None:
    wav = speak(" ".join([SENTENCE] * 5), media_dir / "long.wav", speed=200)
    duration = len(read_wav(wav)[0]) / read_wav(wav)[1]
    assert duration > 15
    encoded = encode_as(wav, media_dir / "long.webm", "webm", "libopus")
    reports: list[float] = []

    audio = decode_audio(encoded, on_progress=reports.append)

    assert abs(len(audio) / SAMPLE_RATE - duration) < 0.1
    assert reports[-1] == 1.0
    assert reports == sorted(reports) and all(0.0 < fraction <= 1.0 for fraction in reports)
    # About one call per 5 s of media plus the final one, not one per 20 ms Opus frame.
    assert int(duration // 5) - 1 <= len(reports) <= int(duration // 5) + 2


# -- bad input -------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")

    with pytest.raises(MediaError, match=r"^the file is empty$"):
        decode_audio(empty)
    with pytest.raises(MediaError, match=r"^the file is empty$"):
        decode_audio(io.BytesIO(b""))


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(np.random.default_rng(7).bytes(64 * 1024), id="random-bytes"),
        pytest.param(b"Minutes of the meeting\n\n- budget approved\n- next review in May\n" * 50, id="text"),
        pytest.param(b"%PDF-1.7\n" + b"\x00" * 512, id="pdf-header"),
    ],
)
def test_not_media(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(content)

    with pytest.raises(MediaError, match=r"^not a media file PyAV can read: Invalid data found"):
        decode_audio(path)
    with pytest.raises(MediaError, match=r"^not a media file PyAV can read"):
        decode_audio(io.BytesIO(content))


@pytest.mark.parametrize("name", ["minutes.txt", "notes.asc", "readme.nfo"])
def test_text_file_by_name(tmp_path: Path, name: str) -> None:
    # FFmpeg probes by extension too: its "tty" (ANSI art) demuxer takes these as video.
    path = tmp_path / name
    path.write_text("Minutes of the meeting\n\n- budget approved\n" * 20)

    with pytest.raises(MediaError, match=r"^not a media file PyAV can read: it is a text file$"):
        decode_audio(path)


@pytest.mark.parametrize(("container", "codec", "suffix"), [("mp4", "mpeg4", ".mp4"), ("webm", "libvpx", ".webm")])
def test_video_without_audio(tmp_path: Path, container: str, codec: str, suffix: str) -> None:
    video = write_video_only(tmp_path / f"silent{suffix}", container, codec)

    with pytest.raises(MediaError, match=r"^the file holds no audio stream$"):
        decode_audio(video)


def test_missing_path(tmp_path: Path) -> None:
    # A missing local file is the caller's bug, not the user's media: a plain FileNotFoundError.
    with pytest.raises(FileNotFoundError):
        decode_audio(tmp_path / "nope.wav")


def test_truncated_file_decodes_what_is_there(speech_wav: Path, media_dir: Path) -> None:
    encoded = encode_as(speech_wav, media_dir / "cut.webm", "webm", "libopus")
    data = encoded.read_bytes()

    audio = decode_audio(io.BytesIO(data[: len(data) // 2]))

    # A recording cut short (a crashed browser tab) still yields its first part.
    full = len(read_wav(speech_wav)[0]) / read_wav(speech_wav)[1]
    assert 0.25 * full < len(audio) / SAMPLE_RATE < 0.75 * full


# -- S3 --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bucket(s3: S3Client) -> str:
    name = "media-test"
    s3.create_bucket(Bucket=name)
    return name


@pytest.mark.parametrize(
    ("container", "codec", "suffix"), [("mp4", "aac", ".mp4"), ("webm", "libopus", ".webm")], ids=["mp4", "webm"]
)
def test_decode_from_s3(
    s3: S3Client, bucket: str, speech_wav: Path, media_dir: Path, container: str, codec: str, suffix: str
) -> None:
    local = encode_as(speech_wav, media_dir / f"s3{suffix}", container, codec)
    data = local.read_bytes()
    if container == "mp4":
        # PyAV (like ffmpeg without +faststart) writes the index after the data: the reader must seek.
        assert data.find(b"moov") > data.find(b"mdat") > 0
    s3.put_object(Bucket=bucket, Key=f"recordings/speech{suffix}", Body=data)

    with open_s3_object(s3, bucket, f"recordings/speech{suffix}") as remote:
        audio = decode_audio(remote)
        reader = remote.raw
        assert isinstance(reader, S3RangeReader)
        assert reader.size == len(data)
        assert 0 < reader.bytes_fetched <= 2 * len(data)

    assert np.array_equal(audio, decode_audio(local))


def test_s3_small_blocks_seek_without_refetching(s3: S3Client, bucket: str, speech_wav: Path, media_dir: Path) -> None:
    # Blocks far smaller than the file make the MP4 demuxer's jumps (data → index at the end →
    # data) cross block boundaries, as a real recording of hundreds of MiB does with 1 MiB blocks.
    local = encode_as(speech_wav, media_dir / "blocks.mp4", "mp4", "aac")
    size = local.stat().st_size
    s3.put_object(Bucket=bucket, Key="blocks.mp4", Body=local.read_bytes())
    reader = S3RangeReader(s3, bucket, "blocks.mp4", block_size=4096, cached_blocks=2)

    with io.BufferedReader(reader, buffer_size=8192) as remote:
        audio = decode_audio(remote)

    assert np.array_equal(audio, decode_audio(local))
    assert reader.bytes_fetched <= 2 * size
    assert reader.requests <= 2 * (size // 4096 + 1)


def test_s3_reader_file_semantics(s3: S3Client, bucket: str) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes
    s3.put_object(Bucket=bucket, Key="bytes.bin", Body=data)

    with S3RangeReader(s3, bucket, "bytes.bin", block_size=1000, cached_blocks=3) as reader:
        assert reader.readable() and reader.seekable() and reader.tell() == 0
        assert reader.read(5) == data[:5]
        assert reader.seek(995) == 995 and reader.read(10) == data[995:1005]  # across two blocks
        assert reader.seek(-4, os.SEEK_END) == len(data) - 4 and reader.read(100) == data[-4:]
        assert reader.read(1) == b""
        assert reader.seek(20000) == 20000 and reader.read(3) == b""
        assert reader.seek(-10, os.SEEK_CUR) == 19990
        with pytest.raises(OSError, match="negative seek"):
            reader.seek(-1)
        reader.seek(0)
        assert reader.readall() == data
        fetched = reader.bytes_fetched
        reader.seek(1500)
        assert reader.read(10) == data[1500:1510]
        assert reader.bytes_fetched > fetched  # block 1 fell out of the 3-block cache
        assert reader.name == f"s3://{bucket}/bytes.bin"
    assert reader.closed
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)


def test_s3_missing_object(s3: S3Client, bucket: str) -> None:
    with pytest.raises(MediaError, match=rf"^s3://{bucket}/missing.webm does not exist$"):
        open_s3_object(s3, bucket, "missing.webm")
    with pytest.raises(MediaError, match=r"^s3://no-such-bucket/a.webm does not exist$"):
        open_s3_object(s3, "no-such-bucket", "a.webm")


def test_s3_object_replaced_while_reading(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="replaced.bin", Body=b"a" * 5000)
    reader = S3RangeReader(s3, bucket, "replaced.bin", block_size=1000)
    assert reader.read(10) == b"a" * 10
    s3.put_object(Bucket=bucket, Key="replaced.bin", Body=b"b" * 5000)

    reader.seek(3000)
    with pytest.raises(MediaError, match="changed while it was being read"):
        reader.read(10)


def test_s3_empty_and_garbage_objects(s3: S3Client, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="empty.webm", Body=b"")
    s3.put_object(Bucket=bucket, Key="notes.txt", Body=b"not audio at all\n" * 100)

    with open_s3_object(s3, bucket, "empty.webm") as remote, pytest.raises(MediaError, match=r"^the file is empty$"):
        decode_audio(remote)
    with open_s3_object(s3, bucket, "notes.txt") as remote, pytest.raises(MediaError, match="it is a text file"):
        decode_audio(remote)


def test_s3_object_replaced_before_decoding(s3: S3Client, bucket: str, speech_wav: Path, media_dir: Path) -> None:
    local = encode_as(speech_wav, media_dir / "replaced.webm", "webm", "libopus")
    s3.put_object(Bucket=bucket, Key="replaced.webm", Body=local.read_bytes())
    remote = open_s3_object(s3, bucket, "replaced.webm")
    s3.put_object(Bucket=bucket, Key="replaced.webm", Body=local.read_bytes() + b"\0")

    # The reader's error passes through FFmpeg's read callback unchanged.
    with remote, pytest.raises(MediaError, match="changed while it was being read"):
        decode_audio(remote)
