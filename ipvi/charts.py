"""Small charts as inline SVG text: nothing to fetch, nothing to run, readable when printed.

The linkage report, ``ipvi dedupe --report`` and the review page draw their charts here (one
home for chart drawing). Every label is escaped; every chart has a ``<title>`` for screen
readers and a tooltip (``<title>`` inside each mark) giving the exact value.
"""

from __future__ import annotations

import math
from html import escape

BLUE, ORANGE, GREEN, RED, GREY = "#2166ac", "#e08214", "#1b7837", "#b2182b", "#777777"
FONT = 'font-family="sans-serif" font-size="12"'


def _svg(width: float, height: float, title: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width:.0f}" '
        f'height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" {FONT}>'
        f"<title>{escape(title)}</title>" + "".join(body) + "</svg>"
    )


def _text(x: float, y: float, text: str, anchor: str = "start", fill: str = "#222") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" fill="{fill}">'
        f"{escape(str(text))}</text>"
    )


def _rect(x: float, y: float, width: float, height: float, fill: str, tip: str) -> str:
    return (
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0.0):.1f}" height="{height:.1f}" '
        f'fill="{fill}"><title>{escape(tip)}</title></rect>'
    )


def horizontal_bars(
    rows: list[tuple[str, float]],
    *,
    title: str,
    value_format: str = "{:,.0f}",
    width: int = 640,
    colour: str = BLUE,
) -> str:
    """One bar per ``(label, value)``, longest scaled to the plot width.

    >>> horizontal_bars([("a", 2), ("b", 1)], title="t").count("<rect")
    2
    """
    label_width, row_height = 200, 22
    plot = width - label_width - 90
    top = max((value for _, value in rows), default=0) or 1
    body = []
    for k, (label, value) in enumerate(rows):
        y = 6 + k * row_height
        length = plot * value / top
        shown = value_format.format(value)
        body.append(_text(label_width - 6, y + 14, label, "end"))
        body.append(_rect(label_width, y + 3, length, row_height - 6, colour, f"{label}: {shown}"))
        body.append(_text(label_width + length + 4, y + 14, shown))
    return _svg(width, 12 + row_height * max(len(rows), 1), title, body)


def paired_bars(
    groups: list[tuple[str, list[tuple[str, float, float]]]],
    *,
    title: str,
    names: tuple[str, str] = ("m", "u"),
    width: int = 640,
) -> str:
    """Two bars (0 to 1) per level, grouped under a heading: Splink's m and u chart.

    ``groups`` is ``[(heading, [(level label, first value, second value), ...]), ...]``.
    """
    label_width, bar, gap = 230, 8, 6
    plot = width - label_width - 70
    body = [
        _rect(label_width, 4, 10, 10, BLUE, names[0]),
        _text(label_width + 14, 13, names[0]),
        _rect(label_width + 60, 4, 10, 10, ORANGE, names[1]),
        _text(label_width + 74, 13, names[1]),
    ]
    y = 24
    for heading, levels in groups:
        body.append(
            f'<text x="4" y="{y + 12:.1f}" font-weight="bold">{escape(str(heading))}</text>'
        )
        y += 18
        for label, first, second in levels:
            body.append(_text(label_width - 6, y + 12, label, "end"))
            for offset, value, colour, name in (
                (0, first, BLUE, names[0]),
                (bar, second, ORANGE, names[1]),
            ):
                tip = f"{heading}, {label}: {name} = {value:.4g}"
                body.append(_rect(label_width, y + offset, plot * value, bar, colour, tip))
            body.append(_text(label_width + plot * max(first, second) + 4, y + 12, f"{first:.3g}"))
            y += 2 * bar + gap
        y += 4
    return _svg(width, y + 4, title, body)


def histogram(
    edges: list[float],
    counts: list[int],
    *,
    title: str,
    x_label: str,
    lines: dict[str, float] | None = None,
    log_counts: bool = True,
    width: int = 640,
    height: int = 240,
) -> str:
    """Bars over ``edges`` (len(counts) + 1) with labelled vertical ``lines`` (thresholds).

    Counts are drawn on a log scale by default: the non-matches outnumber the matches by
    orders of magnitude, and both should be visible.
    """
    left, right, top, bottom = 50, 10, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = edges[0], edges[-1]
    span = (high - low) or 1.0

    def x_of(value: float) -> float:
        return left + plot_w * (min(max(value, low), high) - low) / span

    def scaled(count: float) -> float:
        return math.log10(1 + count) if log_counts else count

    peak = max((scaled(c) for c in counts), default=0) or 1
    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}" '
        'stroke="#444"/>'
    ]
    for k, count in enumerate(counts):
        x0, x1 = x_of(edges[k]), x_of(edges[k + 1])
        h = plot_h * scaled(count) / peak
        tip = f"{edges[k]:g} to {edges[k + 1]:g}: {count:,} pairs"
        body.append(_rect(x0 + 0.5, top + plot_h - h, x1 - x0 - 1, h, BLUE, tip))
    for tick in _ticks(low, high, 8):
        body.append(_text(x_of(tick), top + plot_h + 14, f"{tick:g}", "middle"))
    body.append(_text(left + plot_w / 2, height - 6, x_label, "middle"))
    body.append(_text(4, top + 10, "pairs (log)" if log_counts else "pairs"))
    for k, (name, value) in enumerate((lines or {}).items()):
        x = x_of(value)
        body.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="{RED}" '
            f'stroke-dasharray="4 3"><title>{escape(name)}: {value:.3g}</title></line>'
        )
        body.append(_text(x + 3, top + 12 + 13 * k, name, fill=RED))
    return _svg(width, height, title, body)


def _ticks(low: float, high: float, count: int) -> list[float]:
    """Round tick values between ``low`` and ``high``.

    >>> _ticks(-10, 10, 5)
    [-10, -5, 0, 5, 10]
    """
    raw = (high - low) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = min((m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw), default=raw)
    first = math.ceil(low / step) * step
    return [round(first + k * step, 10) for k in range(int((high - first) / step) + 1)]


def waterfall(
    start: tuple[str, float],
    steps: list[tuple[str, float | None]],
    *,
    title: str,
    width: int = 640,
) -> str:
    """Match weight from the prior to the total, one bar per comparison (Splink's waterfall).

    ``start`` is ``(label, prior weight)``; each step ``(label, weight)`` moves the running
    total (green up, red down); a step whose weight is None (withheld) is listed without a
    bar. The last row is the total, with its probability.
    """
    rows = [(start[0], 0.0, start[1], GREY)]
    total = start[1]
    for label, weight in steps:
        if weight is None:
            rows.append((label, None, None, GREY))
            continue
        rows.append((label, total, total + weight, GREEN if weight >= 0 else RED))
        total += weight
    rows.append(("final match weight", 0.0, total, BLUE))
    values = [v for _, a, b, _ in rows if a is not None for v in (a, b)]
    low, high = min(values + [0.0]), max(values + [0.0])
    low, high = math.floor(low) - 1, math.ceil(high) + 1
    label_width, row_height, value_width = 250, 20, 70
    plot = width - label_width - value_width

    def x_of(value: float) -> float:
        return label_width + plot * (value - low) / (high - low)

    body = []
    axis_y = 8 + row_height * len(rows)
    zero = x_of(0.0)
    body.append(f'<line x1="{zero:.1f}" y1="4" x2="{zero:.1f}" y2="{axis_y:.1f}" stroke="#999"/>')
    for k, (label, a, b, colour) in enumerate(rows):
        y = 6 + k * row_height
        body.append(_text(label_width - 6, y + 13, label, "end"))
        if a is None:
            body.append(_text(label_width + 4, y + 13, "withheld", fill=GREY))
            continue
        change = b - a if k and k < len(rows) - 1 else b
        shown = f"{change:+.2f}"
        tip = f"{label}: {shown} (running total {b:.2f})"
        body.append(_rect(x_of(min(a, b)), y + 3, abs(x_of(b) - x_of(a)), 14, colour, tip))
        body.append(_text(width - value_width + 6, y + 13, shown))
    for tick in _ticks(low, high, 8):
        body.append(_text(x_of(tick), axis_y + 14, f"{tick:g}", "middle"))
    probability = 1 / (1 + 2 ** -max(min(total, 1000), -1000))
    body.append(
        _text(label_width, axis_y + 30, f"match weight (log2 odds); probability {probability:.4f}")
    )
    return _svg(width, axis_y + 38, title, body)


def period_lines(
    periods: list[str],
    series: dict[str, list[float | None]],
    *,
    title: str,
    y_label: str,
    lines: dict[str, float] | None = None,
    width: int = 720,
    height: int = 240,
) -> str:
    """One line per series over ``periods`` (a missing value breaks the line), with labelled
    horizontal reference ``lines`` (a figure at training, a threshold).

    >>> period_lines(["2025Q1", "2025Q2"], {"AUC": [0.7, None]}, title="t", y_label="AUC",
    ...              lines={"at training": 0.72}).count("<circle")
    1
    """
    left, right, top, bottom = 50, 170, 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for vs in series.values() for v in vs if v is not None]
    values += list((lines or {}).values())
    low, high = min(values + [0.0]), max(values + [1e-9])
    high += (high - low) * 0.08 or 1.0
    step = plot_w / max(len(periods), 1)

    def x_of(k: int) -> float:
        return left + step * (k + 0.5)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - (value - low) / (high - low))

    body = [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" '
        'stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for tick in _ticks(low, high, 5):
        body.append(_text(left - 4, y_of(tick) + 4, f"{tick:g}", "end"))
    every = max(1, math.ceil(len(periods) / 8))
    for k, period in enumerate(periods):
        if k % every == 0:
            body.append(_text(x_of(k), top + plot_h + 14, period, "middle"))
    body.append(_text(left + plot_w / 2, height - 6, "period", "middle"))
    body.append(_text(4, top + 10, y_label))
    colours = (BLUE, ORANGE, GREEN, GREY)
    for s, (name, points) in enumerate(series.items()):
        colour = colours[s % len(colours)]
        segment: list[str] = []
        for k, value in enumerate([*points, None]):
            if value is None:
                if len(segment) > 1:
                    path = " ".join(segment)
                    body.append(
                        f'<polyline points="{path}" fill="none" stroke="{colour}" '
                        'stroke-width="2"/>'
                    )
                segment = []
                continue
            x, y = x_of(k), y_of(value)
            segment.append(f"{x:.1f},{y:.1f}")
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(name)}, {escape(periods[k])}: {value:.3g}</title></circle>"
            )
        body.append(_text(left + plot_w + 8, top + 12 + 14 * s, name, fill=colour))
    for name, value in (lines or {}).items():
        y = y_of(value)
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{RED}" '
            f'stroke-dasharray="4 3"><title>{escape(name)}: {value:.3g}</title></line>'
        )
        body.append(_text(left + plot_w + 8, y + 4, name, fill=RED))
    return _svg(width, height, title, body)
