"""Score histogram by decision as inline SVG (pure): the review page needs no JS library or CDN."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

# Colour per decision; anything else (NOT_ENROLLED, LOCKED, ...) has no score and is not plotted.
COLOURS = {"ACCEPT": "#2e7d32", "INCONCLUSIVE": "#f9a825", "REJECT": "#c62828"}
LOW, HIGH, BINS = -0.25, 1.0, 25
WIDTH, HEIGHT, PAD = 640, 220, 30


def histogram_svg(scores: Mapping[str, Sequence[float]], thresholds: Sequence[float] = ()) -> str:
    """Stacked bars of score counts per decision over [LOW, HIGH] (outliers go to the edge bins),
    with dashed lines at `thresholds`."""
    edges = np.linspace(LOW, HIGH, BINS + 1)
    counts = {
        d: np.histogram(np.clip(np.asarray(scores.get(d, []), dtype=float), LOW, HIGH), bins=edges)[0] for d in COLOURS
    }
    total = sum(counts.values(), np.zeros(BINS, dtype=int))
    peak = max(int(total.max()), 1)
    plot_w, plot_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    bar_w = plot_w / BINS

    def x(value: float) -> float:
        return PAD + (value - LOW) / (HIGH - LOW) * plot_w

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        'role="img" aria-label="Score histogram by decision" class="histogram">',
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#555"/>',
    ]
    base = np.zeros(BINS)
    for decision, colour in COLOURS.items():
        for i, n in enumerate(counts[decision]):
            if n:
                h = n / peak * plot_h
                y = HEIGHT - PAD - base[i] - h
                parts.append(
                    f'<rect x="{PAD + i * bar_w + 1:.1f}" y="{y:.1f}" width="{bar_w - 2:.1f}" height="{h:.1f}" '
                    f'fill="{colour}"><title>{escape(decision)} {edges[i]:.2f}..{edges[i + 1]:.2f}: {n}</title></rect>'
                )
                base[i] += h
    for t in thresholds:
        if LOW <= t <= HIGH:
            parts.append(
                f'<line x1="{x(t):.1f}" y1="{PAD - 5}" x2="{x(t):.1f}" y2="{HEIGHT - PAD}" '
                'stroke="#333" stroke-dasharray="4 3"/>'
            )
    for tick in (-0.25, 0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(
            f'<text x="{x(tick):.1f}" y="{HEIGHT - PAD + 14}" font-size="10" text-anchor="middle">{tick:g}</text>'
        )
    parts.append(f'<text x="{PAD}" y="{PAD - 10}" font-size="10">max {peak} per bin</text>')
    for i, (decision, colour) in enumerate(COLOURS.items()):
        lx = WIDTH - PAD - 390 + i * 130
        parts.append(f'<rect x="{lx}" y="{PAD - 20}" width="10" height="10" fill="{colour}"/>')
        n = int(counts[decision].sum())
        parts.append(f'<text x="{lx + 14}" y="{PAD - 11}" font-size="10">{escape(decision)} ({n})</text>')
    parts.append("</svg>")
    return "".join(parts)
