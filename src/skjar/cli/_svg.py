"""Small, dependency-free SVG charts for the HTML report: lines, scatter, bars, heatmaps.

Every function returns one ``<svg>`` element as a string, sized by its
``viewBox`` so it scales with the page, with a ``<title>`` for screen readers.
No external resources, fonts or scripts: the report opens offline.

>>> svg = line_chart([Series("model", [0, 1], [0, 1])], title="ROC", xlabel="FPR", ylabel="TPR")
>>> svg.startswith("<svg")
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

# Colour-blind-safe qualitative palette (Okabe-Ito, reordered for contrast on white).
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#D55E00",
    "#CC79A7",
    "#56B4E9",
    "#8C6D31",
    "#000000",
    "#F0E442",
)
INK = "#1f2933"
GRID = "#e4e7eb"
MUTED = "#7b8794"
FONT = "font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif"


def color(i: int) -> str:
    """The ``i``-th series colour."""
    return PALETTE[i % len(PALETTE)]


@dataclass
class Series:
    """One named line (or set of points) of a chart."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = ""


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi].

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    return ticks


def fmt_tick(v: float) -> str:
    """Compact tick label: ``0.2``, ``1.5k``, ``2e-05``."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 10000:
        return f"{v / 1000:.0f}k"
    if a >= 1000:
        return f"{v / 1000:.1f}k".replace(".0k", "k")
    if a < 0.001:
        return f"{v:.0e}"
    return f"{v:.4g}"


class _Frame:
    """A plot area: maps data coordinates to pixels and draws axes, grid and labels."""

    def __init__(
        self,
        width: int,
        height: int,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        *,
        left: int = 58,
        right: int = 16,
        top: int = 34,
        bottom: int = 48,
    ) -> None:
        self.width, self.height = width, height
        self.left, self.top = left, top
        self.w = width - left - right
        self.h = height - top - bottom
        self.x0, self.x1 = xlim
        self.y0, self.y1 = ylim
        if self.x1 <= self.x0:
            self.x1 = self.x0 + 1
        if self.y1 <= self.y0:
            self.y1 = self.y0 + 1

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.w

    def sy(self, y: float) -> float:
        return self.top + self.h - (y - self.y0) / (self.y1 - self.y0) * self.h

    def axes(
        self, title: str, xlabel: str, ylabel: str, xticks: bool = True, yticks: bool = True
    ) -> list[str]:
        out = [
            f'<rect x="{self.left}" y="{self.top}" width="{self.w}" height="{self.h}" '
            f'fill="#ffffff" stroke="{GRID}"/>'
        ]
        if yticks:
            for t in nice_ticks(self.y0, self.y1):
                if self.y0 - 1e-12 <= t <= self.y1 + 1e-12:
                    y = self.sy(t)
                    out.append(
                        f'<line x1="{self.left}" x2="{self.left + self.w}" y1="{y:.1f}" '
                        f'y2="{y:.1f}" stroke="{GRID}"/>'
                        f'<text x="{self.left - 6}" y="{y + 4:.1f}" text-anchor="end" '
                        f'font-size="11" fill="{MUTED}">{fmt_tick(t)}</text>'
                    )
        if xticks:
            for t in nice_ticks(self.x0, self.x1):
                if self.x0 - 1e-12 <= t <= self.x1 + 1e-12:
                    x = self.sx(t)
                    out.append(
                        f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{self.top}" '
                        f'y2="{self.top + self.h}" stroke="{GRID}"/>'
                        f'<text x="{x:.1f}" y="{self.top + self.h + 16}" text-anchor="middle" '
                        f'font-size="11" fill="{MUTED}">{fmt_tick(t)}</text>'
                    )
        out.append(
            f'<text x="{self.width / 2:.0f}" y="20" text-anchor="middle" font-size="14" '
            f'font-weight="600" fill="{INK}">{escape(title)}</text>'
        )
        out.append(
            f'<text x="{self.left + self.w / 2:.0f}" y="{self.height - 10}" '
            f'text-anchor="middle" font-size="12" fill="{INK}">{escape(xlabel)}</text>'
        )
        cy = self.top + self.h / 2
        out.append(
            f'<text x="14" y="{cy:.0f}" text-anchor="middle" font-size="12" fill="{INK}" '
            f'transform="rotate(-90 14 {cy:.0f})">{escape(ylabel)}</text>'
        )
        return out

    def clip(self, cid: str) -> str:
        return (
            f'<clipPath id="{cid}"><rect x="{self.left}" y="{self.top}" width="{self.w}" '
            f'height="{self.h}"/></clipPath>'
        )


_ids = iter(range(1, 1 << 30))


def _svg(width: int, height: int, title: str, body: list[str], css_class: str = "chart") -> str:
    return (
        f'<svg class="{css_class}" viewBox="0 0 {width} {height}" role="img" '
        f'preserveAspectRatio="xMidYMid meet" style="{FONT}">'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _legend(frame: _Frame, items: list[tuple[str, str]], corner: str = "br") -> list[str]:
    if not items:
        return []
    row_h = 16
    box_w = min(frame.w - 12, 12 + max(len(name) for name, _ in items) * 6.6 + 22)
    box_h = row_h * len(items) + 8
    x = frame.left + frame.w - box_w - 6 if corner[1] == "r" else frame.left + 6
    y = frame.top + frame.h - box_h - 6 if corner[0] == "b" else frame.top + 6
    out = [
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{box_w:.0f}" height="{box_h}" rx="4" '
        f'fill="#ffffff" fill-opacity="0.9" stroke="{GRID}"/>'
    ]
    for i, (name, col) in enumerate(items):
        ty = y + 4 + row_h * i + row_h / 2
        out.append(
            f'<line x1="{x + 8:.0f}" x2="{x + 24:.0f}" y1="{ty:.1f}" y2="{ty:.1f}" '
            f'stroke="{col}" stroke-width="3"/>'
            f'<text x="{x + 30:.0f}" y="{ty + 4:.1f}" font-size="11" fill="{INK}">'
            f"{escape(name)}</text>"
        )
    return out


def _bounds(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 0.0, 1.0
    lo, hi = min(finite), max(finite)
    if hi == lo:
        return lo - 1, hi + 1
    span = hi - lo
    return lo - span * pad, hi + span * pad


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    xlim: tuple[float, float] | None = None,
    ylim: tuple[float, float] | None = None,
    diagonal: bool = False,
    baseline: float | None = None,
    legend: str = "br",
    width: int = 460,
    height: int = 380,
) -> str:
    """Lines (e.g. ROC or precision-recall curves), one per series, with a legend.

    ``diagonal`` draws the chance line y = x; ``baseline`` a dashed horizontal line.
    """
    xs = [x for s in series for x in s.xs]
    ys = [y for s in series for y in s.ys]
    frame = _Frame(width, height, xlim or _bounds(xs), ylim or _bounds(ys))
    cid = f"c{next(_ids)}"
    body = [frame.clip(cid), *frame.axes(title, xlabel, ylabel)]
    if diagonal:
        body.append(
            f'<line x1="{frame.sx(frame.x0):.1f}" y1="{frame.sy(frame.y0):.1f}" '
            f'x2="{frame.sx(frame.x1):.1f}" y2="{frame.sy(frame.y1):.1f}" stroke="{MUTED}" '
            'stroke-dasharray="5 4"/>'
        )
    if baseline is not None:
        body.append(
            f'<line x1="{frame.left}" x2="{frame.left + frame.w}" y1="{frame.sy(baseline):.1f}" '
            f'y2="{frame.sy(baseline):.1f}" stroke="{MUTED}" stroke-dasharray="5 4"/>'
        )
    items = []
    for i, s in enumerate(series):
        col = s.color or color(i)
        pts = " ".join(
            f"{frame.sx(x):.1f},{frame.sy(y):.1f}"
            for x, y in zip(s.xs, s.ys)
            if math.isfinite(x) and math.isfinite(y)
        )
        body.append(
            f'<polyline clip-path="url(#{cid})" points="{pts}" fill="none" stroke="{col}" '
            'stroke-width="2.5" stroke-linejoin="round"/>'
        )
        items.append((s.name, col))
    body += _legend(frame, items, legend)
    return _svg(width, height, title, body)


def scatter_chart(
    xs: Sequence[float],
    ys: Sequence[float],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    point_color: str = PALETTE[0],
    diagonal: bool = False,
    hline: float | None = None,
    width: int = 460,
    height: int = 360,
) -> str:
    """Points (e.g. residuals against predictions); ``diagonal`` y = x, ``hline`` y = value."""
    if diagonal:
        lo, hi = _bounds(list(xs) + list(ys))
        xlim = ylim = (lo, hi)
    else:
        xlim, ylim = _bounds(xs), _bounds(list(ys) + ([hline] if hline is not None else []))
    frame = _Frame(width, height, xlim, ylim)
    cid = f"c{next(_ids)}"
    body = [frame.clip(cid), *frame.axes(title, xlabel, ylabel)]
    if diagonal:
        body.append(
            f'<line x1="{frame.sx(frame.x0):.1f}" y1="{frame.sy(frame.y0):.1f}" '
            f'x2="{frame.sx(frame.x1):.1f}" y2="{frame.sy(frame.y1):.1f}" stroke="{MUTED}" '
            'stroke-dasharray="5 4"/>'
        )
    if hline is not None:
        body.append(
            f'<line x1="{frame.left}" x2="{frame.left + frame.w}" y1="{frame.sy(hline):.1f}" '
            f'y2="{frame.sy(hline):.1f}" stroke="{MUTED}" stroke-dasharray="5 4"/>'
        )
    dots = "".join(
        f'<circle cx="{frame.sx(x):.1f}" cy="{frame.sy(y):.1f}" r="2.6"/>'
        for x, y in zip(xs, ys)
        if math.isfinite(x) and math.isfinite(y)
    )
    body.append(f'<g clip-path="url(#{cid})" fill="{point_color}" fill-opacity="0.55">{dots}</g>')
    return _svg(width, height, title, body)


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str = "",
    colors: Sequence[str] | None = None,
    ylim: tuple[float, float] | None = None,
    best: set[int] | frozenset[int] = frozenset(),
    width: int = 300,
    height: int = 260,
) -> str:
    """One bar per label with its value printed on top; the ``best`` indices get a star.

    ``ylabel`` is printed small under the title (e.g. "higher is better").
    """
    finite = [v for v in values if math.isfinite(v)]
    lo = min(0.0, *finite) if finite else 0.0
    hi = max(finite) if finite else 1.0
    if ylim is None:
        ylim = (lo, hi * 1.15 if hi > 0 else 1.0)
    frame = _Frame(width, height, (0, max(len(labels), 1)), ylim, left=40, top=50, bottom=30)
    body = frame.axes(title, "", "", xticks=False)
    if ylabel:
        body.append(
            f'<text x="{width / 2:.0f}" y="36" text-anchor="middle" font-size="11" '
            f'fill="{MUTED}">{escape(ylabel)}</text>'
        )
    slot = frame.w / max(len(labels), 1)
    bar_w = min(slot * 0.7, 56)
    zero = frame.sy(max(ylim[0], 0.0))
    for i, (label, v) in enumerate(zip(labels, values)):
        cx = frame.left + slot * (i + 0.5)
        col = colors[i] if colors else color(i)
        short = label if len(label) <= 14 else label[:13] + "…"
        body.append(
            f'<text x="{cx:.1f}" y="{frame.top + frame.h + 16}" text-anchor="middle" '
            f'font-size="11" fill="{INK}">{escape(short)}</text>'
        )
        if not math.isfinite(v):
            body.append(
                f'<text x="{cx:.1f}" y="{zero - 6:.1f}" text-anchor="middle" font-size="11" '
                f'fill="{MUTED}">n/a</text>'
            )
            continue
        y = frame.sy(v)
        top, h = min(y, zero), abs(zero - y)
        star = " ★" if i in best else ""
        body.append(
            f'<rect x="{cx - bar_w / 2:.1f}" y="{top:.1f}" width="{bar_w:.1f}" '
            f'height="{max(h, 1):.1f}" rx="2" fill="{col}"/>'
            f'<text x="{cx:.1f}" y="{top - 5:.1f}" text-anchor="middle" font-size="11" '
            f'font-weight="{600 if star else 400}" fill="{INK}">{v:.4g}{star}</text>'
        )
    return _svg(width, height, title, body)


def heatmap(
    matrix: Sequence[Sequence[float]],
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    title: str,
    xlabel: str = "predicted",
    ylabel: str = "actual",
    base_color: tuple[int, int, int] = (0, 114, 178),
    width: int = 420,
) -> str:
    """A matrix of counts (a confusion matrix), shaded by row share, counts printed in cells."""
    n_rows, n_cols = len(row_labels), len(col_labels)
    label_w = min(110, 12 + max((len(str(r)) for r in row_labels), default=1) * 7)
    cell = max(14.0, min(64.0, (width - label_w - 30) / max(n_cols, 1)))
    height = int(60 + cell * n_rows + 50)
    width = int(label_w + 30 + cell * n_cols + 10)
    left, top = label_w + 30, 40
    body = [
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="14" '
        f'font-weight="600" fill="{INK}">{escape(title)}</text>'
    ]
    font = max(8, min(13, int(cell / 3)))
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, v in enumerate(row):
            share = v / total
            r, g, b = (int(255 - (255 - c) * share) for c in base_color)
            x, y = left + j * cell, top + i * cell
            text_col = "#ffffff" if share > 0.55 else INK
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill="rgb({r},{g},{b})" stroke="#ffffff"/>'
            )
            if cell >= 18:
                body.append(
                    f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + font / 3:.1f}" '
                    f'text-anchor="middle" font-size="{font}" fill="{text_col}">{int(v)}</text>'
                )
    for i, lab in enumerate(row_labels):
        short = str(lab) if len(str(lab)) <= 14 else str(lab)[:13] + "…"
        body.append(
            f'<text x="{left - 6}" y="{top + i * cell + cell / 2 + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="{INK}">{escape(short)}</text>'
        )
    for j, lab in enumerate(col_labels):
        fit = max(3, int(cell / 6.5))
        short = str(lab) if len(str(lab)) <= fit else str(lab)[: fit - 1] + "…"
        body.append(
            f'<text x="{left + j * cell + cell / 2:.1f}" y="{top + n_rows * cell + 15:.1f}" '
            f'text-anchor="middle" font-size="11" fill="{INK}">{escape(short)}</text>'
        )
    body.append(
        f'<text x="{left + n_cols * cell / 2:.0f}" y="{height - 10}" text-anchor="middle" '
        f'font-size="12" fill="{INK}">{escape(xlabel)}</text>'
    )
    cy = top + n_rows * cell / 2
    body.append(
        f'<text x="14" y="{cy:.0f}" text-anchor="middle" font-size="12" fill="{INK}" '
        f'transform="rotate(-90 14 {cy:.0f})">{escape(ylabel)}</text>'
    )
    return _svg(width, height, title, body)
