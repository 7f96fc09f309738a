"""`voiceid eval-challenge`: the protocol, the threshold fit and the report's keys."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from voiceid.cli import app
from voiceid.config import Settings
from voiceid.evaluation.challenge import TextRow, Trial, fit_threshold, mismatch_prompts, summarise


def trial(score: float, genuine: bool) -> Trial:
    return Trial("u", "s", "123456", genuine, "123456", score)


def test_the_fit_keeps_mismatch_passes_at_or_below_the_target() -> None:
    mismatch = [trial(s, False) for s in [*range(-99, 1)]]  # 100 scores -99 .. 0
    genuine = [trial(s, True) for s in (-50.0, 0.5, 1.0)]
    threshold = fit_threshold(mismatch + genuine, 0.02)
    # The two highest (0, -1) may pass, the third (-2) may not; the genuine 0.5 and 1.0 pass. Any
    # threshold in (-2, 0.5] does that: the fit takes the middle of that gap, not its edge.
    assert threshold == pytest.approx((-2 + 0.5) / 2)
    figures = summarise(mismatch + genuine, threshold)
    assert figures["mismatch_pass_rate"] <= 0.02 and figures["genuine_pass_rate"] == round(2 / 3, 4)
    # Without a gap (a genuine score right above the third mismatch) the threshold stays admissible.
    tight = [*mismatch, trial(-1.999, True)]
    assert summarise(tight, fit_threshold(tight, 0.02))["mismatch_pass_rate"] <= 0.02
    assert fit_threshold(tight, 0.02) <= -1.999
    # Unalignable mismatches (-inf) never pass whatever the threshold.
    assert not summarise([trial(-math.inf, False)], -1e9)["mismatch_pass_rate"]


def test_mismatch_prompts_prefer_the_same_speaker_and_never_the_own_text() -> None:
    rows = [
        TextRow("a1", "a", Path("a1"), "111111"),
        TextRow("a2", "a", Path("a2"), "222222"),
        TextRow("a3", "a", Path("a3"), "111111"),
        TextRow("b1", "b", Path("b1"), "333333"),
    ]
    assert mismatch_prompts(rows[0], rows, 1) == ["222222"]
    assert mismatch_prompts(rows[0], rows, 5) == ["222222", "333333"]


@pytest.mark.devdata
def test_the_command_writes_the_report_with_the_keys_the_issue_names(settings: Settings, tmp_path: Path) -> None:
    source = settings.dev_data_dir / "dev_8k" / "manifest.csv"
    with source.open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:2]
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "path": str(source.parent / row["path"])})
    out = tmp_path / "r.json"
    result = CliRunner().invoke(
        app, ["eval-challenge", "--manifest", str(manifest), "--channel", "g711-ulaw", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    digits = json.loads(out.read_text())["kinds"]["digits"]
    assert {"genuine_pass_rate", "mismatch_pass_rate", "n_genuine", "n_mismatch", "real_time_factor"} <= set(digits)
    assert (digits["n_genuine"], digits["n_mismatch"]) == (2, 2)
    assert 0 < digits["real_time_factor"] < 1
