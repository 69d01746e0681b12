"""Composites participants' video into one picture, in YUV 4:2:0 planes with numpy.

It runs for every output frame (30 times a second at 720p), so nothing is converted to RGB:
each tile is scaled by swscale straight into I420 and its planes copied into one preallocated
buffer. The geometry of a layout is computed once per (tile count, layout, focus) and name
labels are drawn with Pillow once per name and size, then blended into the luma plane.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import av
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["Compositor", "Layout", "Tile"]

#: Video-range black, and the grey of a tile without camera.
BLACK_Y = 16
PLACEHOLDER_Y = 48
NEUTRAL_UV = 128
WHITE_Y = 235
#: How much of the picture under a label its box hides.
LABEL_BOX_OPACITY = 0.6
GAP = 4  # pixels between tiles


class Layout(enum.Enum):
    """How participants share the picture."""

    GRID = "grid"
    """Everyone in an even grid (a screen share takes the main area, cameras a strip)."""
    SPEAKER = "speaker"
    """The active speaker (or a screen share) large, the others in a strip."""
    SINGLE_SPEAKER = "single-speaker"
    """Only the active speaker (or a screen share)."""


@dataclass
class Tile:
    """One participant's picture: a camera, or a screen share."""

    identity: str
    name: str
    frame: av.VideoFrame | None
    """None: camera off (the tile shows the participant's initials)."""
    screen: bool = False


@dataclass(frozen=True)
class _Rect:
    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class _Overlay:
    """A label or initials, ready to blend: luma = luma * scale + offset; chroma is pulled
    toward neutral by ``chroma_scale`` (the box) over the half-resolution area."""

    scale: np.ndarray  # float32 (h, w)
    offset: np.ndarray  # float32 (h, w)
    chroma_scale: float
    width: int
    height: int


class Compositor:
    """Composes tiles into ``width`` x ``height`` yuv420p frames in a given layout."""

    def __init__(self, width: int, height: int, layout: Layout) -> None:
        if width % 2 or height % 2:
            raise ValueError("width and height must be even (4:2:0 chroma)")
        self.width = width
        self.height = height
        self.layout = layout
        self._buffer = np.empty((height * 3 // 2, width), np.uint8)
        flat = self._buffer.reshape(-1)
        chroma = (height // 2) * (width // 2)
        self._y = flat[: width * height].reshape(height, width)
        self._u = flat[width * height : width * height + chroma].reshape(height // 2, width // 2)
        self._v = flat[width * height + chroma : width * height + 2 * chroma].reshape(height // 2, width // 2)
        self._geometry: dict[tuple[int, Layout, int | None], list[_Rect | None]] = {}

    def compose(self, tiles: Sequence[Tile], speaker: str | None) -> av.VideoFrame:
        """One output frame: the tiles placed by the layout around ``speaker`` (an identity;
        None or absent: the first tile), each with its name label. No tiles: a black frame."""
        self._y.fill(BLACK_Y)
        self._u.fill(NEUTRAL_UV)
        self._v.fill(NEUTRAL_UV)
        if tiles:
            focus = self._focus(tiles, speaker)
            key = (len(tiles), self.layout, focus)
            rects = self._geometry.get(key)
            if rects is None:
                rects = self._geometry[key] = self._place(len(tiles), focus)
            for tile, rect in zip(tiles, rects, strict=True):
                if rect is not None:
                    self._draw(tile, rect)
        return av.VideoFrame.from_ndarray(self._buffer, format="yuv420p")

    # -- layout -------------------------------------------------------------------------------

    def _focus(self, tiles: Sequence[Tile], speaker: str | None) -> int | None:
        """The index of the tile that takes the main area, or None for an even grid."""
        screen = next((index for index, tile in enumerate(tiles) if tile.screen), None)
        if screen is not None:
            return screen
        if self.layout is Layout.GRID:
            return None
        return next((index for index, tile in enumerate(tiles) if tile.identity == speaker), 0)

    def _place(self, count: int, focus: int | None) -> list[_Rect | None]:
        full = _Rect(0, 0, self.width, self.height)
        if focus is None:
            return _grid(full, count)
        if self.layout is Layout.SINGLE_SPEAKER or count == 1:
            return [full if index == focus else None for index in range(count)]
        main, strip = _main_and_strip(full, count - 1)
        others = iter(strip)
        return [main if index == focus else next(others) for index in range(count)]

    # -- drawing ------------------------------------------------------------------------------

    def _draw(self, tile: Tile, rect: _Rect) -> None:
        if tile.frame is None:
            self._fill(rect, PLACEHOLDER_Y)
            size = max(12, min(rect.width, rect.height) // 4)
            initials = _overlay(_initials(tile.name or tile.identity), size, box=False)
            x = rect.x + (rect.width - initials.width) // 2
            y = rect.y + (rect.height - initials.height) // 2
            self._blend(initials, x, y, rect)
        else:
            # The label sits on the picture, not on the letterbox bars around it.
            rect = self._paste(tile.frame, rect)
        if tile.name:
            size = max(10, min(rect.height // 14, 28))
            label = _overlay(tile.name, size, box=True)
            margin = max(2, size // 3) & ~1
            self._blend(label, rect.x + margin, rect.y + rect.height - label.height - margin, rect)

    def _fill(self, rect: _Rect, luma: int) -> None:
        self._y[rect.y : rect.y + rect.height, rect.x : rect.x + rect.width] = luma

    def _paste(self, frame: av.VideoFrame, rect: _Rect) -> _Rect:
        """Scales ``frame`` into ``rect`` keeping its aspect ratio (letterboxed, centred);
        returns where the picture went."""
        scale = min(rect.width / frame.width, rect.height / frame.height)
        width = min(rect.width, max(2, round(frame.width * scale)) & ~1)
        height = min(rect.height, max(2, round(frame.height * scale)) & ~1)
        x = rect.x + ((rect.width - width) // 2 & ~1)
        y = rect.y + ((rect.height - height) // 2 & ~1)
        scaled = frame.reformat(width=width, height=height, format="yuv420p")
        for plane, target, w, h in (
            (scaled.planes[0], self._y[y : y + height, x : x + width], width, height),
            (scaled.planes[1], self._u[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2], width // 2, height // 2),
            (scaled.planes[2], self._v[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2], width // 2, height // 2),
        ):
            source = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)[:h, :w]
            target[...] = source
        return _Rect(x, y, width, height)

    def _blend(self, overlay: _Overlay, x: int, y: int, clip: _Rect) -> None:
        x, y = max(x, clip.x) & ~1, max(y, clip.y) & ~1
        width = min(overlay.width, clip.x + clip.width - x) & ~1
        height = min(overlay.height, clip.y + clip.height - y) & ~1
        if width <= 0 or height <= 0:
            return
        region = self._y[y : y + height, x : x + width]
        blended = region * overlay.scale[:height, :width] + overlay.offset[:height, :width]
        region[...] = blended.astype(np.uint8)
        if overlay.chroma_scale != 1.0:
            for plane in (self._u, self._v):
                area = plane[y // 2 : (y + height) // 2, x // 2 : (x + width) // 2]
                area[...] = (NEUTRAL_UV + (area.astype(np.int16) - NEUTRAL_UV) * overlay.chroma_scale).astype(np.uint8)


def _grid(area: _Rect, count: int) -> list[_Rect | None]:
    """An even grid (1, 2 side by side, 2x2, 3x2, 3x3, 4x4...), the last row centred."""
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cell_width, cell_height = area.width // columns, area.height // rows
    rects: list[_Rect | None] = []
    for index in range(count):
        row, column = divmod(index, columns)
        in_row = min(columns, count - row * columns)
        shift = (columns - in_row) * cell_width // 2
        cell = _Rect(area.x + shift + column * cell_width, area.y + row * cell_height, cell_width, cell_height)
        rects.append(_inset(cell))
    return rects


def _main_and_strip(area: _Rect, others: int) -> tuple[_Rect, list[_Rect | None]]:
    """A main area and a strip of ``others`` tiles: on the right of a landscape picture, at the
    bottom of a portrait one. Tiles that do not fit in the strip are not shown."""
    if area.width >= area.height:
        strip_width = area.width // 5
        tile_height = min(area.height // others, strip_width * 9 // 16)
        shown = area.height // tile_height
        top = area.y + (area.height - min(others, shown) * tile_height) // 2
        strip: list[_Rect | None] = [
            _inset(_Rect(area.x + area.width - strip_width, top + index * tile_height, strip_width, tile_height))
            if index < shown
            else None
            for index in range(others)
        ]
        return _inset(_Rect(area.x, area.y, area.width - strip_width, area.height)), strip
    strip_height = area.height // 5
    tile_width = min(area.width // others, strip_height * 16 // 9)
    shown = area.width // tile_width
    left = area.x + (area.width - min(others, shown) * tile_width) // 2
    strip = [
        _inset(_Rect(left + index * tile_width, area.y + area.height - strip_height, tile_width, strip_height))
        if index < shown
        else None
        for index in range(others)
    ]
    return _inset(_Rect(area.x, area.y, area.width, area.height - strip_height)), strip


def _inset(rect: _Rect) -> _Rect:
    """The rect less half a gap on each side, on even coordinates (4:2:0 chroma)."""
    x = (rect.x + GAP // 2 + 1) & ~1
    y = (rect.y + GAP // 2 + 1) & ~1
    right = (rect.x + rect.width - GAP // 2) & ~1
    bottom = (rect.y + rect.height - GAP // 2) & ~1
    return _Rect(x, y, max(2, right - x), max(2, bottom - y))


def _initials(name: str) -> str:
    words = [word for word in name.replace("_", " ").replace("-", " ").split() if word]
    letters = "".join(word[0] for word in words[:2]) or name[:2]
    return letters.upper() or "?"


@lru_cache(maxsize=512)
def _overlay(text: str, size: int, *, box: bool) -> _Overlay:
    """White ``text`` at ``size`` px, on a semi-dark box when ``box``, as a blend ready for the
    luma plane. Cached: a name is drawn once, not 30 times a second."""
    font = ImageFont.load_default(size=size)
    left, top, right, bottom = (int(value) for value in font.getbbox(text))
    pad = max(2, size // 4) if box else 0
    width = (right - left + 2 * pad + 1) & ~1
    height = (bottom - top + 2 * pad + 1) & ~1
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).text((pad - left, pad - top), text, font=font, fill=255)
    text_alpha = np.asarray(mask, np.float32) / 255
    box_alpha = LABEL_BOX_OPACITY if box else 0.0
    # luma' = (luma (1 - box) + black box) (1 - text) + white text
    scale = (1 - box_alpha) * (1 - text_alpha)
    offset = BLACK_Y * box_alpha * (1 - text_alpha) + WHITE_Y * text_alpha
    return _Overlay(scale, offset, 1 - box_alpha, width, height)
