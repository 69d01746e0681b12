"""The compositor: each participant's picture lands where the layout says, with its label."""

from __future__ import annotations

import av
import numpy as np
import pytest

from egress._compositor import Compositor, Layout, Tile

WIDTH, HEIGHT = 1280, 720
COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def _solid(rgb: tuple[int, int, int], width: int = 640, height: int = 480) -> av.VideoFrame:
    return av.VideoFrame.from_ndarray(np.full((height, width, 3), rgb, np.uint8), format="rgb24").reformat(
        format="yuv420p"
    )


def _yuv(rgb: tuple[int, int, int]) -> np.ndarray:
    """The YUV of a colour, as swscale converts it."""
    return _sample(_solid(rgb, 16, 16), 0.5, 0.5)


def _sample(frame: av.VideoFrame, x: float, y: float) -> np.ndarray:
    """Y, U, V at a point given as fractions of the picture's width and height."""
    planes = frame.to_ndarray()  # (h * 3 / 2, w)
    height, width = frame.height, frame.width
    column, row = int(x * width) & ~1, int(y * height) & ~1
    chroma = planes[height:].reshape(-1)
    u = chroma[: (height // 2) * (width // 2)].reshape(height // 2, width // 2)
    v = chroma[(height // 2) * (width // 2) :].reshape(height // 2, width // 2)
    return np.array([planes[row, column], u[row // 2, column // 2], v[row // 2, column // 2]], np.int16)


def _is(frame: av.VideoFrame, x: float, y: float, colour: str) -> bool:
    expected = _yuv(COLOURS[colour]) if colour in COLOURS else np.array([16, 128, 128], np.int16)
    return bool(np.abs(_sample(frame, x, y) - expected).max() <= 6)


def _tiles(*names: str) -> list[Tile]:
    return [Tile(name, name.title(), _solid(COLOURS[name])) for name in names]


def test_an_empty_room_is_black() -> None:
    frame = Compositor(WIDTH, HEIGHT, Layout.GRID).compose([], None)
    assert (frame.width, frame.height, frame.format.name) == (WIDTH, HEIGHT, "yuv420p")
    assert _is(frame, 0.5, 0.5, "black") and _is(frame, 0.1, 0.9, "black")


def test_grid_of_one_two_and_four() -> None:
    compositor = Compositor(WIDTH, HEIGHT, Layout.GRID)
    one = compositor.compose(_tiles("red"), None)
    assert _is(one, 0.5, 0.5, "red") and _is(one, 0.5, 0.1, "red")
    two = compositor.compose(_tiles("red", "green"), None)
    assert _is(two, 0.25, 0.5, "red") and _is(two, 0.75, 0.5, "green")
    assert _is(two, 0.25, 0.05, "black")  # 4:3 pictures letterboxed in half a 16:9 picture
    four = compositor.compose(_tiles("red", "green", "blue", "yellow"), "blue")
    assert _is(four, 0.25, 0.25, "red") and _is(four, 0.75, 0.25, "green")
    assert _is(four, 0.25, 0.75, "blue") and _is(four, 0.75, 0.75, "yellow")
    # three: a 2x2 grid with the last row centred
    three = compositor.compose(_tiles("red", "green", "blue"), None)
    assert _is(three, 0.25, 0.25, "red") and _is(three, 0.75, 0.25, "green") and _is(three, 0.5, 0.75, "blue")


def test_speaker_layout_puts_the_speaker_large() -> None:
    compositor = Compositor(WIDTH, HEIGHT, Layout.SPEAKER)
    frame = compositor.compose(_tiles("red", "green", "blue"), "green")
    assert _is(frame, 0.4, 0.5, "green")
    strip = [_sample(frame, 0.9, y) for y in np.linspace(0.02, 0.98, 60)]
    assert any(np.abs(s - _yuv(COLOURS["red"])).max() <= 6 for s in strip)
    assert any(np.abs(s - _yuv(COLOURS["blue"])).max() <= 6 for s in strip)
    # an unknown speaker: the first tile
    assert _is(compositor.compose(_tiles("red", "green", "blue"), "nobody"), 0.4, 0.5, "red")


def test_single_speaker_shows_only_the_speaker() -> None:
    frame = Compositor(WIDTH, HEIGHT, Layout.SINGLE_SPEAKER).compose(_tiles("red", "green", "blue"), "blue")
    for x in (0.3, 0.5, 0.7):
        assert _is(frame, x, 0.5, "blue")


@pytest.mark.parametrize("layout", list(Layout))
def test_a_screen_share_takes_the_focus(layout: Layout) -> None:
    screen = Tile("green", "Green's screen", _solid(COLOURS["yellow"], 1920, 1080), screen=True)
    frame = Compositor(WIDTH, HEIGHT, layout).compose([*_tiles("red", "blue"), screen], "red")
    assert _is(frame, 0.4, 0.5, "yellow")
    if layout is not Layout.SINGLE_SPEAKER:
        strip = [_sample(frame, 0.9, y) for y in np.linspace(0.02, 0.98, 60)]
        assert any(np.abs(s - _yuv(COLOURS["red"])).max() <= 6 for s in strip)


def test_labels_and_placeholders() -> None:
    compositor = Compositor(WIDTH, HEIGHT, Layout.GRID)
    labelled = compositor.compose([Tile("red", "Ada Lovelace", _solid(COLOURS["red"]))], None).to_ndarray()
    plain = compositor.compose([Tile("red", "", _solid(COLOURS["red"]))], None).to_ndarray()
    difference = np.argwhere(labelled[:HEIGHT] != plain[:HEIGHT])
    assert len(difference) > 100
    rows, columns = difference[:, 0], difference[:, 1]
    # bottom-left of the picture (a 4:3 picture in a 16:9 frame: it starts at x = 160)
    assert rows.min() > HEIGHT * 0.85 and 160 <= columns.min() < WIDTH * 0.2 and columns.max() < WIDTH * 0.5
    # the label's box darkens the picture under it
    assert labelled[rows, columns].astype(int).mean() != plain[rows, columns].astype(int).mean()

    camera_off = compositor.compose([Tile("ada", "Ada Lovelace", None)], None)
    y = camera_off.to_ndarray()[:HEIGHT]
    centre = y[HEIGHT // 2 - 100 : HEIGHT // 2 + 100, WIDTH // 2 - 100 : WIDTH // 2 + 100]
    assert 30 < int(np.median(y)) < 80  # a dark tile
    assert centre.max() > 200  # with white initials in the middle
    assert _sample(camera_off, 0.5, 0.05)[1:].tolist() == [128, 128]


def test_any_frame_size_and_format_is_scaled() -> None:
    portrait = av.VideoFrame.from_ndarray(np.full((640, 360, 3), COLOURS["blue"], np.uint8), format="rgb24")
    frame = Compositor(640, 360, Layout.GRID).compose([Tile("p", "P", portrait)], None)
    assert _is(frame, 0.5, 0.5, "blue") and _is(frame, 0.2, 0.5, "black")
