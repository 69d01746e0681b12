"""Test media: real speech from espeak-ng, re-encoded with PyAV into the containers and codecs
meeting recordings and uploads come in."""

from __future__ import annotations

import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.container import OutputContainer
from av.video.stream import VideoStream

ESPEAK = shutil.which("espeak-ng") or "/usr/bin/espeak-ng"

#: Settings some FFmpeg encoders insist on: the native Vorbis encoder only takes stereo and is
#: marked experimental (PyAV's wheel ships no libvorbis); Opus only takes 8/12/16/24/48 kHz.
_ENCODER_LAYOUT = {"vorbis": "stereo"}
_ENCODER_OPTIONS = {"vorbis": {"strict": "experimental"}}


def speak(text: str, path: Path, *, voice: str = "en", speed: int | None = None) -> Path:
    """Synthesize ``text`` to a WAV file (22.05 kHz mono s16) with espeak-ng.

    Args:
        text: What to say.
        path: The WAV file to write.
        voice: An espeak-ng voice, e.g. ``en``, ``de``, ``en-us+f3``.
        speed: Words per minute (espeak-ng's default is 175).

    Returns:
        ``path``.
    """
    command = [ESPEAK, "-v", voice, "-w", str(path)]
    if speed is not None:
        command += ["-s", str(speed)]
    subprocess.run([*command, text], check=True, capture_output=True, timeout=60)
    return path


def encode_as(wav_path: Path, out_path: Path, container: str, codec: str, *, video_codec: str | None = None) -> Path:
    """Re-encode an audio file's first audio stream with PyAV.

    Args:
        wav_path: The source (any format PyAV reads).
        out_path: The file to write.
        container: An FFmpeg muxer name: ``webm``, ``ogg``, ``mp4``, ``mp3``, ``matroska``…
        codec: An FFmpeg encoder name: ``libopus``, ``vorbis``, ``aac``, ``libmp3lame``, ``flac``…
        video_codec: Also add a video stream (a moving gradient at 5 fps, as long as the audio)
            with this encoder, e.g. ``mpeg4`` or ``libvpx``: a screen recording with sound.

    Returns:
        ``out_path``.
    """
    encoder = av.Codec(codec, "w")
    rates = encoder.audio_rates
    rate = 48000 if not rates or 48000 in rates else max(rates)
    layout = _ENCODER_LAYOUT.get(codec, "mono")
    with av.open(str(wav_path), mode="r") as source, av.open(str(out_path), mode="w", format=container) as target:
        stream = target.add_stream(codec, rate=rate, layout=layout, options=_ENCODER_OPTIONS.get(codec, {}))
        assert isinstance(stream, AudioStream), f"{codec} is not an audio encoder"
        resampler = av.AudioResampler(format=stream.codec_context.format, layout=layout, rate=rate)
        video = None
        if video_codec is not None:
            video = _add_video_stream(target, video_codec, Fraction(5))
            video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        end = 0.0
        for frame in source.decode(audio=0):
            for converted in resampler.resample(frame):
                target.mux(stream.encode(converted))
            end = max(end, (frame.time or 0.0) + frame.samples / frame.sample_rate)
        for converted in resampler.resample(None):
            target.mux(stream.encode(converted))
        target.mux(stream.encode(None))
        if video is not None:
            for index in range(max(1, round(end * 5))):
                target.mux(video.encode(_gradient(index)))
            target.mux(video.encode(None))
    return out_path


def _add_video_stream(target: OutputContainer, codec: str, rate: Fraction) -> VideoStream:
    stream = target.add_stream(codec, rate=rate)
    assert isinstance(stream, VideoStream), f"{codec} is not a video encoder"
    return stream


def _gradient(index: int) -> av.VideoFrame:
    pixels = np.full((48, 64, 3), (index * 20) % 256, dtype=np.uint8)
    pixels[:, : (index * 6) % 64] = 255
    return av.VideoFrame.from_ndarray(pixels, format="rgb24")


def write_video_only(out_path: Path, container: str, codec: str, *, frames: int = 10) -> Path:
    """Write a few frames of a moving gradient as a video file with no audio stream.

    Args:
        out_path: The file to write.
        container: An FFmpeg muxer name, e.g. ``mp4`` or ``webm``.
        codec: An FFmpeg video encoder, e.g. ``mpeg4`` or ``libvpx``.
        frames: How many frames (at 10 fps).

    Returns:
        ``out_path``.
    """
    with av.open(str(out_path), mode="w", format=container) as target:
        stream = _add_video_stream(target, codec, Fraction(10))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            target.mux(stream.encode(_gradient(index)))
        target.mux(stream.encode(None))
    return out_path


def read_wav(path: Path) -> tuple[npt.NDArray[np.float32], int]:
    """A WAV file's samples (mono mix, float32 in ``[-1, 1]``) and sample rate, read with the
    standard library, independent of the decoder under test."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2, "espeak-ng writes 16-bit PCM"
        raw = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels = wav.getnchannels()
        rate = wav.getframerate()
    samples = raw.reshape(-1, channels).mean(axis=1) / 32768.0
    return samples.astype(np.float32), rate
