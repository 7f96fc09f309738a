"""The review page's charts as inline SVG (pure): the page needs no JS library or CDN.

- `histogram_svg`: scores of one channel, stacked by decision, on the scale the thresholds live on.
  The axis spans the scores *and* the thresholds (nice round ticks), so every bar and every
  threshold line falls inside the plot; nothing is clipped into an edge bin.
- `daily_svg`: the share of each decision per day, with the day's count.

Every bar carries `data-*` attributes (bin edges, decision, count) so a browser test can check the
drawing against the data, and a `<title>` so a mouse-over tells the analyst the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from html import escape

import numpy as np

# Colour per decision; anything else (NOT_ENROLLED, LOCKED, ...) has no score and is not plotted.
COLOURS = {"ACCEPT": "#2e7d32", "INCONCLUSIVE": "#f9a825", "REJECT": "#c62828"}
OTHER_COLOUR = "#90a4ae"
WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 34, 46
TARGET_BINS = 24


@dataclass(frozen=True)
class Threshold:
    name: str  # "accept" | "reject"
    value: float


def nice_step(span: float, target: int) -> float:
    """A round bin width (1, 2, 2.5 or 5 times a power of ten) giving about `target` bins."""
    raw = max(span, 1e-9) / target
    power = float(10 ** math.floor(math.log10(raw)))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if m * power >= raw:
            return m * power
    return 10 * power


def bin_edges(values: Sequence[float], marks: Sequence[float], target: int = TARGET_BINS) -> np.ndarray:
    """Edges on multiples of a round step covering every value and mark, with at least one bin of
    margin beyond the outermost threshold so its line never sits on the frame."""
    points = [*values, *marks]
    if not points:
        points = [0.0, 1.0]
    low, high = float(min(points)), float(max(points))
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    step = nice_step(high - low, target)
    # Whole steps, with a little tolerance so 0.95 / 0.05 = 18.999... counts as 19: the last edge lies
    # strictly above the highest value (bins are half-open), the first at or below the lowest.
    eps = 1e-9
    first = math.floor(low / step + eps)
    last = math.floor(high / step + eps) + 1
    if marks:
        first = min(first, math.floor(min(marks) / step + eps) - 1)
        last = max(last, math.floor(max(marks) / step + eps) + 2)
    return np.round(step * np.arange(first, last + 1), 10)


def bin_counts(values: Sequence[float], edges: np.ndarray) -> np.ndarray:
    """Counts per half-open bin [edge_i, edge_i+1); `edges` covers every value."""
    idx = np.searchsorted(edges, np.asarray(values, dtype=float), side="right") - 1
    return np.bincount(np.clip(idx, 0, len(edges) - 2), minlength=len(edges) - 1)


def _fmt(v: float) -> str:
    return f"{v:.2f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}"


def histogram_svg(
    scores: Mapping[str, Sequence[float]],
    thresholds: Sequence[Threshold] = (),
    *,
    scale_label: str = "score",
    title: str = "Scores by decision",
) -> str:
    """Stacked bars of score counts per decision, with the thresholds as labelled dashed lines."""
    decisions = [d for d in COLOURS if scores.get(d)]
    all_values = [float(v) for d in decisions for v in scores[d]]
    edges = bin_edges(all_values, [t.value for t in thresholds])
    counts = {d: bin_counts(scores[d], edges) for d in decisions}
    total = sum(counts.values(), np.zeros(len(edges) - 1, dtype=int))
    peak = max(int(total.max()) if len(total) else 0, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    low, high = float(edges[0]), float(edges[-1])
    bar_w = plot_w / (len(edges) - 1)

    def x(value: float) -> float:
        return LEFT + (value - low) / (high - low) * plot_w

    def y(count: float) -> float:
        return TOP + plot_h - count / peak * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{escape(title)}" class="histogram" data-low="{low:g}" data-high="{high:g}" '
        f'data-total="{int(total.sum())}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" stroke="#ccd"/>',
    ]
    step_y = max(1, math.ceil(peak / 4))
    for tick in range(0, peak + 1, step_y):
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(tick) + 3:.1f}" font-size="10" text-anchor="end">{tick}</text>'
            f'<line x1="{LEFT}" y1="{y(tick):.1f}" x2="{LEFT + plot_w}" y2="{y(tick):.1f}" stroke="#eee"/>'
        )
    base = np.zeros(len(edges) - 1)
    for decision in decisions:
        for i, n in enumerate(counts[decision]):
            if n:
                h = n / peak * plot_h
                top = TOP + plot_h - base[i] - h
                lo, hi = _fmt(float(edges[i])), _fmt(float(edges[i + 1]))
                parts.append(
                    f'<rect class="bar" data-decision="{decision}" '
                    f'data-low="{edges[i]:g}" data-high="{edges[i + 1]:g}" '
                    f'data-count="{int(n)}" x="{LEFT + i * bar_w + 1:.1f}" y="{top:.1f}" width="{bar_w - 2:.1f}" '
                    f'height="{h:.1f}" fill="{COLOURS[decision]}"><title>{decision} {lo} to {hi}: {int(n)} calls'
                    "</title></rect>"
                )
                base[i] += h
    for t in thresholds:
        tx = x(t.value)
        parts.append(
            f'<line class="threshold" data-name="{escape(t.name)}" data-value="{t.value:g}" x1="{tx:.1f}" '
            f'y1="{TOP}" x2="{tx:.1f}" y2="{TOP + plot_h}" stroke="#222" stroke-width="1.5" stroke-dasharray="5 3"/>'
            f'<text x="{tx + 3:.1f}" y="{TOP + 11}" font-size="10">'
            f"{escape(t.name)} {'≥' if t.name == 'accept' else '<'} {_fmt(t.value)}</text>"
        )
    n_ticks = min(len(edges) - 1, 8)
    tick_every = max(1, math.ceil((len(edges) - 1) / n_ticks))
    for i in range(0, len(edges), tick_every):
        parts.append(
            f'<text x="{x(float(edges[i])):.1f}" y="{TOP + plot_h + 13}" font-size="10" text-anchor="middle">'
            f"{_fmt(float(edges[i]))}</text>"
        )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle" class="x-label">'
        f"{escape(scale_label)}</text>"
        f'<text x="12" y="{TOP + plot_h / 2:.1f}" font-size="11" text-anchor="middle" '
        f'transform="rotate(-90 12 {TOP + plot_h / 2:.1f})">calls per bin</text>'
    )
    for i, decision in enumerate(COLOURS):
        lx = LEFT + i * 150
        n = int(counts[decision].sum()) if decision in counts else 0
        parts.append(
            f'<rect x="{lx}" y="{TOP - 24}" width="10" height="10" fill="{COLOURS[decision]}"/>'
            f'<text x="{lx + 14}" y="{TOP - 15}" font-size="11" class="legend" data-decision="{decision}">'
            f"{decision} ({n})</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def daily_svg(counts: Mapping[date, Mapping[str, int]], days: Sequence[date]) -> str:
    """Share of each decision per day (stacked to 100 %), the day's count above each bar."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    n = max(len(days), 1)
    bar_w = plot_w / n
    order = [*COLOURS, "OTHER"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'role="img" aria-label="Decisions per day" class="daily">',
        f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" stroke="#ccd"/>',
    ]
    for pct in (0, 50, 100):
        yy = TOP + plot_h - pct / 100 * plot_h
        parts.append(f'<text x="{LEFT - 6}" y="{yy + 3:.1f}" font-size="10" text-anchor="end">{pct} %</text>')
    label_every = max(1, math.ceil(n / 10))
    for i, day in enumerate(days):
        by = {k: int(v) for k, v in counts.get(day, {}).items()}
        grouped = {d: by.get(d, 0) for d in COLOURS}
        grouped["OTHER"] = sum(v for k, v in by.items() if k not in COLOURS)
        total = sum(grouped.values())
        base = 0.0
        for decision in order:
            c = grouped[decision]
            if not c:
                continue
            h = c / total * plot_h
            colour = COLOURS.get(decision, OTHER_COLOUR)
            parts.append(
                f'<rect class="day-bar" data-day="{day.isoformat()}" data-decision="{decision}" data-count="{c}" '
                f'x="{LEFT + i * bar_w + 1:.1f}" y="{TOP + plot_h - base - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{day.isoformat()} {decision}: {c} of {total} '
                f"({100 * c / total:.0f} %)</title></rect>"
            )
            base += h
        if total:
            parts.append(
                f'<text x="{LEFT + (i + 0.5) * bar_w:.1f}" y="{TOP - 3}" font-size="9" '
                f'text-anchor="middle">{total}</text>'
            )
        if i % label_every == 0:
            parts.append(
                f'<text x="{LEFT + (i + 0.5) * bar_w:.1f}" y="{TOP + plot_h + 13}" font-size="10" '
                f'text-anchor="middle">{day.strftime("%d %b")}</text>'
            )
    parts.append(
        f'<text x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 8}" font-size="11" text-anchor="middle">'
        "day (UTC); bar height: share of the day's decisions; number above: calls that day</text>"
    )
    for i, decision in enumerate(order):
        lx = LEFT + i * 130
        name = "other (no score)" if decision == "OTHER" else decision
        parts.append(
            f'<rect x="{lx}" y="6" width="10" height="10" fill="{COLOURS.get(decision, OTHER_COLOUR)}"/>'
            f'<text x="{lx + 14}" y="15" font-size="11">{name}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
