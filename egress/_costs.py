"""What each kind of recording costs, in Ray CPUs reserved for its recorder process, and the
video presets. Like LiveKit's cost table, the figures are measured (``bench/egress_bench.py``
prints them: a 720p30 composite of four 640×480 publishers took 0.97 cores while dropping 38 %
of its frames on a loaded 2-core machine, so about 1.2 to keep up); ``EgressSettings.cpu_scale``
adjusts them for other machines."""

from __future__ import annotations

from dataclasses import dataclass

from parley.egress.v1 import resources_pb2 as res


@dataclass(frozen=True, kw_only=True)
class VideoPreset:
    width: int
    height: int
    fps: int
    bitrate: int
    #: Ray CPUs reserved for a composite at this preset.
    cpus: float
    #: libx264's speed preset: ``superfast`` costs about half of ``veryfast`` at 720p for the
    #: same bitrate (bench/egress_bench.py), which a meeting's mostly still picture barely shows.
    x264_preset: str = "superfast"


PRESETS: dict[int, VideoPreset] = {
    res.ENCODING_PRESET_H264_720P_30: VideoPreset(width=1280, height=720, fps=30, bitrate=3_000_000, cpus=1.2),
    res.ENCODING_PRESET_H264_720P_15: VideoPreset(width=1280, height=720, fps=15, bitrate=1_500_000, cpus=0.7),
    res.ENCODING_PRESET_H264_1080P_30: VideoPreset(width=1920, height=1080, fps=30, bitrate=4_500_000, cpus=2.4),
    res.ENCODING_PRESET_H264_360P_15: VideoPreset(width=640, height=360, fps=15, bitrate=600_000, cpus=0.35),
}
DEFAULT_PRESET = res.ENCODING_PRESET_H264_720P_30
#: An audio-only composite of four: receive (aiortc's Python receive path is most of it),
#: decode Opus, mix, encode Opus.
AUDIO_ONLY_CPUS = 0.25
#: A track egress: receive and mux, no decoding.
TRACK_CPUS = 0.05


def preset(value: int) -> VideoPreset:
    return PRESETS[value or DEFAULT_PRESET]


def composite_cpus(options: res.RoomComposite, scale: float = 1.0) -> float:
    """Ray CPUs a room composite with these options reserves."""
    cpus = AUDIO_ONLY_CPUS if options.audio_only else preset(options.preset).cpus
    return round(cpus * scale, 3)
