"""Line charts as inline SVG: the report stays one self-contained file and needs no plotting library.

A chart is a title, an x label and one or more series of (x, y) points. `line_chart` draws axes with "nice"
ticks (1, 2, 2.5 or 5 times a power of ten), a rotated y label, one polyline per series (markers too when a
series is short, so a lone eval point shows) and a legend when there is more than one series. Every text is
HTML-escaped: metric names come from files on disk.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from html import escape

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
MARKERS_UP_TO = 60  # series with at most this many points also get a dot (with a hover title) per point


@dataclass
class Series:
    name: str
    xs: list[float]  # (N,) steps
    ys: list[float]  # (N,) finite values


@dataclass
class Chart:
    title: str
    series: list[Series] = field(default_factory=list)
    x_label: str = "step"
    y_label: str = ""
    x_range: tuple[float, float] | None = None  # charts of one run share their x axis, so steps line up


@dataclass(frozen=True)
class Box:
    """The plotting area inside the SVG, in SVG units."""

    left: float = 68
    top: float = 34
    right: float = 444  # width - right margin
    bottom: float = 216  # height - room for x tick labels and the x label
    width: int = 460
    height: int = 262


def ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> list[float]:
    """About n evenly spaced round values from <= lo to >= hi (the axis spans exactly the first to the last)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"axis range must be finite, got {lo}..{hi}")
    if hi <= lo:  # one value: pad so the line sits mid-axis
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [_clean(k * step) for k in range(first, last + 1)]


def _clean(v: float) -> float:
    """k * step without binary noise (0.30000000000000004 -> 0.3)."""
    return 0.0 if v == 0 else round(v, 12 - int(math.floor(math.log10(abs(v)))))


def label(v: float, values: list[float]) -> str:
    """A tick label with as many decimals as the ticks need, or scientific for tiny / huge ones."""
    biggest = max(abs(t) for t in values) or 1.0
    spacing = min((b - a for a, b in zip(values, values[1:])), default=biggest) or biggest
    if biggest >= 1e6 or biggest < 1e-3:
        return f"{v:.2e}" if v else "0"
    decimals = max(0, -math.floor(math.log10(spacing) + 1e-9))
    decimals += 0 if float(round(spacing * 10**decimals, 9)).is_integer() else 1  # 0.25, 2.5 steps
    return f"{v:,.{decimals}f}"


def value(v: float) -> str:
    """A data value for hover titles and tables: 4 significant digits, whole numbers from 10^4 (a step, tokens/s)."""
    return f"{v:.0f}" if 1e4 <= abs(v) < 1e15 else f"{v:.4g}"


def line_chart(chart: Chart, box: Box = Box()) -> str:
    """The chart as an <svg> element: axes, ticks, labels, one <polyline> per series (data-n = its points)."""
    xs = [x for s in chart.series for x in s.xs]
    ys = [y for s in chart.series for y in s.ys]
    if not xs:
        raise ValueError(f"chart {chart.title!r} has no points")
    lo, hi = chart.x_range or (min(xs), max(xs))
    xt, yt = ticks(min(lo, *xs), max(hi, *xs), 6, integer=True), ticks(min(ys), max(ys), 5)
    if len(chart.series) > 1:  # the legend gets a row of its own under the title, off the data
        box = dataclasses.replace(box, top=box.top + 14)

    def px(x: float) -> float:
        return box.left + (x - xt[0]) / (xt[-1] - xt[0]) * (box.right - box.left)

    def py(y: float) -> float:
        return box.bottom - (y - yt[0]) / (yt[-1] - yt[0]) * (box.bottom - box.top)

    title = escape(chart.title)
    parts = [
        f'<svg class="chart" data-title="{title}" viewBox="0 0 {box.width} {box.height}" '
        f'width="{box.width}" height="{box.height}" role="img" aria-label="{title}" '
        'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" font-size="11">',
        f'<text x="{box.width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="600">{title}</text>',
    ]
    parts += _axes(chart, box, xt, yt, px, py)
    for i, s in enumerate(chart.series):
        parts += _series(s, COLORS[i % len(COLORS)], px, py)
    if len(chart.series) > 1:
        parts += _legend(chart.series, box)
    parts.append("</svg>")
    return "\n".join(parts)


def _axes(chart: Chart, box: Box, xt, yt, px, py) -> list[str]:
    out = []
    for t in yt:  # horizontal grid lines with labels on the left
        y = round(py(t), 2)
        out.append(f'<line x1="{box.left}" x2="{box.right}" y1="{y}" y2="{y}" stroke="#e3e3e3"/>')
        out.append(f'<text x="{box.left - 6}" y="{y + 4}" text-anchor="end">{label(t, yt)}</text>')
    for t in xt:
        x = round(px(t), 2)
        out.append(f'<line x1="{x}" x2="{x}" y1="{box.bottom}" y2="{box.bottom + 4}" stroke="#444"/>')
        out.append(f'<text x="{x}" y="{box.bottom + 16}" text-anchor="middle">{label(t, xt)}</text>')
    out.append(f'<path d="M{box.left},{box.top} V{box.bottom} H{box.right}" fill="none" stroke="#444"/>')
    mid_x, mid_y = (box.left + box.right) / 2, (box.top + box.bottom) / 2
    out.append(f'<text x="{mid_x}" y="{box.height - 8}" text-anchor="middle">{escape(chart.x_label)}</text>')
    y_label = escape(chart.y_label or chart.title)
    out.append(
        f'<text x="14" y="{mid_y}" text-anchor="middle" transform="rotate(-90 14 {mid_y})">{y_label}</text>'
    )
    return out


def _series(s: Series, color: str, px, py) -> list[str]:
    points = " ".join(f"{px(x):.2f},{py(y):.2f}" for x, y in zip(s.xs, s.ys))
    name = escape(s.name)
    out = [
        f'<polyline class="series" data-series="{name}" data-n="{len(s.xs)}" points="{points}" fill="none" '
        f'stroke="{color}" stroke-width="1.8" stroke-linejoin="round"/>'
    ]
    if len(s.xs) <= MARKERS_UP_TO:
        for x, y in zip(s.xs, s.ys):
            out.append(
                f'<circle cx="{px(x):.2f}" cy="{py(y):.2f}" r="2.6" fill="{color}">'
                f"<title>{name} @ {value(x)}: {value(y)}</title></circle>"
            )
    return out


def _legend(series: list[Series], box: Box) -> list[str]:
    """One row, right-aligned, between the title and the plotting area."""
    out, y = [], box.top - 14
    widths = [30 + 6.5 * len(s.name) for s in series]
    x = box.right - sum(widths)
    for i, (s, w) in enumerate(zip(series, widths)):
        color = COLORS[i % len(COLORS)]
        out.append(
            f'<line x1="{x:.1f}" x2="{x + 18:.1f}" y1="{y}" y2="{y}" stroke="{color}" stroke-width="2.5"/>'
        )
        out.append(f'<text x="{x + 23:.1f}" y="{y + 4}">{escape(s.name)}</text>')
        x += w
    return out
