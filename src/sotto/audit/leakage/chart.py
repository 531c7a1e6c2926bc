"""A PNG line chart with the standard library only (zlib): accuracy against messages observed.

Small on purpose: axes, grid lines labelled with digits from a 3×5 pixel font, one coloured
polyline per design and a numbered legend key whose names the Markdown report lists (same order,
same colours). No plotting dependency for one figure.
"""

from __future__ import annotations

import itertools
import math
import struct
import zlib
from collections.abc import Mapping, Sequence

Color = tuple[int, int, int]

PALETTE: tuple[Color, ...] = (
    (213, 94, 0),
    (0, 114, 178),
    (0, 158, 115),
    (204, 121, 167),
    (230, 159, 0),
    (86, 180, 233),
    (120, 120, 120),
    (0, 0, 0),
    (160, 40, 40),
)
COLOR_NAMES = ("vermilion", "blue", "green", "pink", "orange", "sky blue", "grey", "black", "dark red")

Glyph = tuple[str, str, str, str, str]
"""One character of the 3×5 pixel font: five rows of three pixels, ``"1"`` drawn."""

DIGIT_GLYPHS: dict[str, Glyph] = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "001", "001", "001"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    ".": ("000", "000", "000", "000", "010"),
}


class Canvas:
    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self.pixels = bytearray(b"\xff" * (width * height * 3))

    def dot(self, x: int, y: int, color: Color, size: int = 1) -> None:
        for dx in range(size):
            for dy in range(size):
                px, py = x + dx, y + dy
                if 0 <= px < self.width and 0 <= py < self.height:
                    i = (py * self.width + px) * 3
                    self.pixels[i : i + 3] = bytes(color)

    def line(self, x0: int, y0: int, x1: int, y1: int, color: Color, *, size: int = 1) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in range(steps + 1):
            self.dot(round(x0 + (x1 - x0) * s / steps), round(y0 + (y1 - y0) * s / steps), color, size)

    glyphs: Mapping[str, Glyph] = DIGIT_GLYPHS
    """The font :meth:`text` draws with; a character it lacks is left as a blank."""

    def spell(self, value: str) -> str:
        """``value`` as the characters of :attr:`glyphs` to draw, one for one."""
        return value

    def text(self, x: int, y: int, value: str, color: Color = (0, 0, 0), scale: int = 2) -> None:
        for n, ch in enumerate(self.spell(value)):
            rows = self.glyphs.get(ch)
            if rows is None:
                continue
            for r, bits in enumerate(rows):
                for c, bit in enumerate(bits):
                    if bit == "1":
                        self.dot(x + (n * 4 + c) * scale, y + r * scale, color, scale)

    def png(self) -> bytes:
        raw = b"".join(
            b"\x00" + bytes(self.pixels[y * self.width * 3 : (y + 1) * self.width * 3])
            for y in range(self.height)
        )

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def accuracy_chart(series: Sequence[tuple[str, dict[int, float]]], max_messages: int = 1000) -> bytes:
    """x: messages observed (log scale, 1 to ``max_messages``); y: fraction of targets whose
    strongest correspondent is identified. One line per (name, {k: fraction}); legend key n is
    the n-th series."""
    width, height = 900, 520
    left, right, top, bottom = 60, 170, 20, 50
    canvas = Canvas(width, height)
    plot_w, plot_h = width - left - right, height - top - bottom
    grey, dark = (225, 225, 225), (60, 60, 60)
    decades = math.log10(max_messages)

    def px(k: float) -> int:
        return left + round(plot_w * math.log10(max(k, 1.0)) / decades)

    def py(f: float) -> int:
        return top + round(plot_h * (1.0 - f))

    for i in range(6):
        f = i / 5
        canvas.line(left, py(f), left + plot_w, py(f), grey)
        canvas.text(left - 34, py(f) - 5, f"{f:.1f}")
    for exponent in range(int(decades) + 1):
        k = 10**exponent
        for sub in range(1, 10):
            if k * sub <= max_messages:
                canvas.line(px(k * sub), top, px(k * sub), top + plot_h, grey if sub > 1 else (200, 200, 200))
        canvas.text(px(k) - 4 * len(str(k)), top + plot_h + 10, str(k))
    canvas.line(left, top, left, top + plot_h, dark, size=2)
    canvas.line(left, top + plot_h, left + plot_w, top + plot_h, dark, size=2)
    for n, (_, points) in enumerate(series):
        color = PALETTE[n % len(PALETTE)]
        xs = sorted(k for k in points if k <= max_messages)
        for a, b in itertools.pairwise(xs):
            canvas.line(px(a), py(points[a]), px(b), py(points[b]), color, size=3)
        ky = top + 10 + n * 28
        canvas.line(width - right + 20, ky + 5, width - right + 60, ky + 5, color, size=4)
        canvas.text(width - right + 70, ky, str(n + 1), color)
    return canvas.png()
