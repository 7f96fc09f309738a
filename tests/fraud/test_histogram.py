"""The review page's charts (pure): axis spans the data and the thresholds, each bin counts right."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import numpy as np
import pytest

from voiceid.fraud.histogram import Threshold, bin_counts, bin_edges, daily_svg, histogram_svg
from voiceid.fraud.views import ScoredRow, charts_by_channel, daily_counts, quality_rows


def bars(svg: str) -> list[tuple[str, float, float, int]]:
    return [
        (d, float(lo), float(hi), int(n))
        for d, lo, hi, n in re.findall(
            r'class="bar" data-decision="(\w+)" data-low="([-\d.e]+)" data-high="([-\d.e]+)" data-count="(\d+)"', svg
        )
    ]


def test_normalised_scores_and_thresholds_fall_inside_the_axis():
    """The reported failure: scores of 4.4-9.4 on a fixed -0.25..1 axis all sat in one bin and the
    thresholds were off the axis."""
    rng = np.random.default_rng(1)
    accept = list(rng.uniform(4.4, 9.4, 40))
    reject = list(rng.uniform(-2.0, 1.0, 30))
    middle = list(rng.uniform(1.3, 3.1, 10))
    svg = histogram_svg(
        {"ACCEPT": accept, "REJECT": reject, "INCONCLUSIVE": middle},
        [Threshold("reject", 1.249), Threshold("accept", 3.187)],
    )
    low, high = (float(v) for v in re.search(r'data-low="([-\d.]+)" data-high="([-\d.]+)"', svg).groups())
    assert low <= min(reject) and high > max(accept)
    found = bars(svg)
    assert len({(lo, hi) for _, lo, hi, _ in found}) > 10  # spread over many bins, not one
    assert sum(n for *_, n in found) == 80
    for decision, values in (("ACCEPT", accept), ("REJECT", reject), ("INCONCLUSIVE", middle)):
        for _, lo, hi, n in (b for b in found if b[0] == decision):
            assert n == sum(1 for v in values if lo <= v < hi)
    lines = re.findall(r'class="threshold" data-name="(\w+)" data-value="([-\d.]+)" x1="([\d.]+)"', svg)
    assert [(name, float(v)) for name, v, _ in lines] == [("reject", 1.249), ("accept", 3.187)]
    for _, _, x in lines:
        assert 48 < float(x) < 720 - 16


@pytest.mark.parametrize(
    ("values", "marks"), [([], []), ([0.5], []), ([3.0, 3.0], [3.0]), ([-1e-3, 1e-3], [0.0]), ([0.1, 120.0], [5.0])]
)
def test_bins_cover_every_value_and_threshold(values, marks):
    edges = bin_edges(values, marks)
    assert all(edges[0] <= v < edges[-1] for v in values)
    assert all(edges[0] < m < edges[-1] for m in marks)
    assert int(bin_counts(values, edges).sum()) == len(values)
    assert np.all(np.diff(edges) > 0)


def test_one_chart_per_channel_with_the_thresholds_most_calls_were_decided_with():
    rows = [
        ScoredRow("phone", "ACCEPT", 5.0, 3.19, 1.25, "as-norm"),
        ScoredRow("phone", "REJECT", 0.1, 3.19, 1.25, "as-norm"),
        ScoredRow("phone", "INCONCLUSIVE", 3.5, 4.26, -0.53, "as-norm"),  # poor audio: stricter pair
        ScoredRow("wideband", "ACCEPT", 6.0, 3.73, 2.32, "as-norm"),
    ]
    phone, wide = charts_by_channel(rows)
    assert (phone.channel, [t.value for t in phone.thresholds], phone.other_thresholds) == ("phone", [1.25, 3.19], 1)
    assert (wide.channel, [t.value for t in wide.thresholds]) == ("wideband", [2.32, 3.73])
    assert "as-norm-normalised score (phone channel)" in phone.scale_label


def test_decisions_per_day_cover_the_window_with_empty_days():
    rows = [
        (datetime(2026, 1, 10, 9, tzinfo=UTC), "ACCEPT"),
        (datetime(2026, 1, 10, 23, tzinfo=UTC), "REJECT"),
        (datetime(2026, 1, 8, 1, tzinfo=UTC), "LOCKED"),
        (datetime(2025, 12, 1, tzinfo=UTC), "ACCEPT"),  # outside the window
    ]
    days, counts = daily_counts(rows, date(2026, 1, 10), 5)
    assert days[0] == date(2026, 1, 6) and days[-1] == date(2026, 1, 10) and len(days) == 5
    assert counts == {date(2026, 1, 10): {"ACCEPT": 1, "REJECT": 1}, date(2026, 1, 8): {"LOCKED": 1}}
    svg = daily_svg(counts, days)
    day_bars = re.findall(r'data-day="([\d-]+)" data-decision="(\w+)" data-count="(\d+)"', svg)
    assert sorted(day_bars) == [
        ("2026-01-08", "OTHER", "1"),
        ("2026-01-10", "ACCEPT", "1"),
        ("2026-01-10", "REJECT", "1"),
    ]


def test_quality_as_labelled_rows():
    rows = dict(quality_rows({"net_speech_s": 4.23456, "snr_db": 17.0, "clipping_ratio": 0.0123, "channel": "phone"}))
    assert rows == {
        "Net speech": "4.2 s",
        "Signal-to-noise ratio": "17.0 dB",
        "Clipped samples": "1.23 %",
        "Channel": "phone",
    }
