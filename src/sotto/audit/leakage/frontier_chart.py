"""The frontier plot (:mod:`.frontier`) as a PNG, with the standard library only, on the same
:class:`~.chart.Canvas` as the accuracy chart, with its 3×5 pixel font extended by letters and punctuation.

Three panels share the points, numbered as in the table: contact top-1 over chance against
latency p50, the same against bytes per person per day, and presence AUC (device on) against
latency p50. A filled square is the best attack of the operator's full view; a hollow one, joined
to it, the best without the source address. Points on the Pareto frontier (:func:`.frontier.pareto`)
are ringed. Below, one line per point: its setting, size, seed and the study's wall and CPU time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from sotto.audit.leakage.chart import DIGIT_GLYPHS, PALETTE, Canvas, Color, Glyph
from sotto.audit.leakage.frontier import Point, pareto

LETTER_GLYPHS: dict[str, Glyph] = {
    **DIGIT_GLYPHS,
    "A": ("010", "101", "111", "101", "101"),
    "B": ("110", "101", "110", "101", "110"),
    "C": ("011", "100", "100", "100", "011"),
    "D": ("110", "101", "101", "101", "110"),
    "E": ("111", "100", "110", "100", "111"),
    "F": ("111", "100", "110", "100", "100"),
    "G": ("011", "100", "101", "101", "011"),
    "H": ("101", "101", "111", "101", "101"),
    "I": ("111", "010", "010", "010", "111"),
    "J": ("001", "001", "001", "101", "010"),
    "K": ("101", "101", "110", "101", "101"),
    "L": ("100", "100", "100", "100", "111"),
    "M": ("101", "111", "111", "101", "101"),
    "N": ("110", "101", "101", "101", "101"),
    "O": ("010", "101", "101", "101", "010"),
    "P": ("110", "101", "110", "100", "100"),
    "Q": ("010", "101", "101", "110", "011"),
    "R": ("110", "101", "110", "101", "101"),
    "S": ("011", "100", "010", "001", "110"),
    "T": ("111", "010", "010", "010", "010"),
    "U": ("101", "101", "101", "101", "111"),
    "V": ("101", "101", "101", "101", "010"),
    "W": ("101", "101", "111", "111", "101"),
    "X": ("101", "101", "010", "101", "101"),
    "Y": ("101", "101", "010", "010", "010"),
    "Z": ("111", "001", "010", "100", "111"),
    ",": ("000", "000", "000", "010", "100"),
    ":": ("000", "010", "000", "010", "000"),
    "-": ("000", "000", "111", "000", "000"),
    "/": ("001", "001", "010", "100", "100"),
    "(": ("010", "100", "100", "100", "010"),
    ")": ("010", "001", "001", "001", "010"),
    "=": ("000", "111", "000", "111", "000"),
    "+": ("000", "010", "111", "010", "000"),
    "#": ("101", "111", "101", "111", "101"),
    "%": ("101", "001", "010", "100", "101"),
    "<": ("001", "010", "100", "010", "001"),
    ">": ("100", "010", "001", "010", "100"),
}
_SPELLED = {"×": "X", "÷": "/", "–": "-", "≤": "<", "≥": ">"}


class LetterCanvas(Canvas):
    """A :class:`Canvas` whose text has letters (upper case) and some punctuation."""

    glyphs = LETTER_GLYPHS

    def spell(self, value: str) -> str:
        return "".join(_SPELLED.get(ch, ch) for ch in value.upper())

    def square(self, x: int, y: int, half: int, color: Color, *, filled: bool) -> None:
        if filled:
            self.dot(x - half, y - half, color, 2 * half + 1)
            return
        for a, b, c, d in (
            (-half, -half, half, -half),
            (half, -half, half, half),
            (half, half, -half, half),
            (-half, half, -half, -half),
        ):
            self.line(x + a, y + b, x + c, y + d, color, size=2)

    def ring(self, x: int, y: int, radius: int, color: Color) -> None:
        for step in range(72):
            angle = 2 * math.pi * step / 72
            self.dot(round(x + radius * math.cos(angle)), round(y + radius * math.sin(angle)), color, 2)


def text_width(value: str, scale: int = 2) -> int:
    return len(value) * 4 * scale


_GREY, _DARK, _FRAME = (225, 225, 225), (60, 60, 60), (200, 200, 200)


class _Panel:
    """One scatter panel: x on a log scale, y linear from ``y_low`` to ``y_high``."""

    def __init__(
        self,
        canvas: LetterCanvas,
        box: tuple[int, int, int, int],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
    ) -> None:
        self.canvas = canvas
        self.left, self.top, self.width, self.height = box
        self.x_low, self.x_high = x_range
        self.y_low, self.y_high = y_range

    def px(self, x: float) -> int:
        low, high = math.log10(self.x_low), math.log10(self.x_high)
        value = math.log10(min(max(x, self.x_low), self.x_high))
        return self.left + round(self.width * (value - low) / (high - low))

    def py(self, y: float) -> int:
        y = min(max(y, self.y_low), self.y_high)
        return self.top + round(self.height * (1 - (y - self.y_low) / (self.y_high - self.y_low)))

    def axes(self, title: str, x_label: str, y_label: str, y_ticks: Sequence[float], y_format: str) -> None:
        c = self.canvas
        bottom = self.top + self.height
        for y in y_ticks:
            c.line(self.left, self.py(y), self.left + self.width, self.py(y), _GREY)
            label = format(y, y_format)
            c.text(self.left - text_width(label) - 6, self.py(y) - 5, label)
        exponent = math.floor(math.log10(self.x_low))
        while 10**exponent <= self.x_high:
            for sub in range(1, 10):
                x = sub * 10.0**exponent
                if self.x_low <= x <= self.x_high:
                    c.line(self.px(x), self.top, self.px(x), bottom, _GREY if sub > 1 else _FRAME)
                    if sub == 1:
                        label = _decade(exponent)
                        c.text(self.px(x) - text_width(label) // 2, bottom + 8, label)
            exponent += 1
        c.line(self.left, self.top, self.left, bottom, _DARK, size=2)
        c.line(self.left, bottom, self.left + self.width, bottom, _DARK, size=2)
        c.text(self.left, self.top - 30, title, _DARK)
        c.text(self.left + self.width - text_width(x_label), bottom + 26, x_label, _DARK)
        c.text(self.left, self.top - 14, y_label, _DARK)


def _decade(exponent: int) -> str:
    value = 10.0**exponent
    return f"{value:g}" if exponent < 5 else f"1E{exponent}"


def frontier_chart(points: Sequence[Point], *, title: str = "") -> bytes:
    """The plot (module docstring) as PNG bytes."""
    width = 1320
    legend_top = 520
    height = legend_top + 40 + 22 * len(points) + 20
    canvas = LetterCanvas(width, height)
    if title:
        canvas.text(20, 12, title, (0, 0, 0))
    front = pareto(points)
    latencies = [p.latency_p50_s for p in points if p.latency_p50_s is not None]
    x_latency = (0.01, 10 ** math.ceil(math.log10(max([*latencies, 1.0]) * 1.5)))
    kbytes = [p.kbytes_per_person_day for p in points if p.kbytes_per_person_day > 0]
    x_bytes = (
        10 ** math.floor(math.log10(min([*kbytes, 100.0]))),
        10 ** math.ceil(math.log10(max([*kbytes, 100.0]) * 1.2)),
    )
    leaks = [p.leak for p in points] + [p.top1_no_address / p.chance for p in points if p.chance]
    y_leak_high = max(2.0, math.ceil(max([*leaks, 1.0]) + 0.5))
    step = max(1, math.ceil(y_leak_high / 6))
    leak_ticks = [float(v) for v in range(0, int(y_leak_high) + 1, step)]
    panel_w, panel_h, top = 330, 350, 90

    def latency_of(p: Point) -> float | None:
        return None if p.latency_p50_s is None else max(p.latency_p50_s, x_latency[0])

    panels: list[tuple[_Panel, Callable[[Point], float | None], Callable[[Point], float | None], bool]] = []
    leak_latency = _Panel(canvas, (90, top, panel_w, panel_h), x_latency, (0.0, y_leak_high))
    leak_latency.axes("CONTACTS VS LATENCY", "LATENCY P50, S", "TOP-1 / CHANCE", leak_ticks, ".0f")
    panels.append((leak_latency, latency_of, lambda p: p.leak, True))
    leak_bytes = _Panel(canvas, (530, top, panel_w, panel_h), x_bytes, (0.0, y_leak_high))
    leak_bytes.axes("CONTACTS VS BANDWIDTH", "KB PER PERSON-DAY", "TOP-1 / CHANCE", leak_ticks, ".0f")
    panels.append((leak_bytes, lambda p: p.kbytes_per_person_day or None, lambda p: p.leak, True))
    presence = _Panel(canvas, (970, top, panel_w, panel_h), x_latency, (0.4, 1.0))
    presence.axes(
        "ONLINE TIME VS LATENCY",
        "LATENCY P50, S",
        "PRESENCE AUC, DEVICE ON",
        [0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0],
        ".1f",
    )
    panels.append((presence, latency_of, lambda p: p.presence_device_on, False))

    for panel, x_of, y_of, with_address in panels:
        for n, p in enumerate(points):
            x, y = x_of(p), y_of(p)
            if x is None or y is None:
                continue
            color = PALETTE[n % len(PALETTE)]
            cx, cy = panel.px(x), panel.py(y)
            if with_address and p.chance:
                ny = panel.py(p.top1_no_address / p.chance)
                if ny != cy:
                    canvas.line(cx, cy, cx, ny, color)
                canvas.square(cx, ny, 5, color, filled=False)
            canvas.square(cx, cy, 5, color, filled=True)
            if front[n]:
                canvas.ring(cx, cy, 11, _DARK)
            canvas.text(cx + 9, cy - 14, str(n + 1), color)
    guess = leak_latency.py(1.0)
    for panel in (leak_latency, leak_bytes):
        for x in range(panel.left, panel.left + panel.width, 8):
            canvas.line(x, panel.py(1.0), x + 3, panel.py(1.0), _DARK)
    canvas.text(leak_latency.left + 4, guess + 4, "CHANCE", _DARK)

    y = legend_top
    canvas.text(
        20,
        y,
        "FILLED: ALL ATTACKS. HOLLOW: WITHOUT SOURCE ADDRESS. RINGED: ON THE FRONTIER. "
        "LATENCY: RELAY TOOK A TEXT -> RELAY HANDED IT OUT (0 DRAWN AT 0.01 S).",
        _DARK,
    )
    y += 26
    for n, p in enumerate(points):
        color = PALETTE[n % len(PALETTE)]
        canvas.square(26, y + 4, 5, color, filled=True)
        line = (
            f"{n + 1}  {p.setting.name}: {p.people} PEOPLE X {p.days:g} DAYS, SEED {p.seed}, "
            f"STUDY {p.wall_s:,.0f} S WALL / {p.cpu_s:,.0f} S CPU.  TOP-1 {p.top1:.2f} "
            f"(CHANCE {p.chance:.2f}), AUC {_auc(p.presence_device_on)}, "
            f"P50/P99 {_s(p.latency_p50_s)}/{_s(p.latency_p99_s)}, {p.kbytes_per_person_day:,.0f} KB/DAY"
        )
        canvas.text(40, y, line, color)
        y += 22
    return canvas.png()


def _s(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} S" if value < 100 else f"{value:,.0f} S"


def _auc(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


__all__ = ["LetterCanvas", "frontier_chart", "text_width"]
