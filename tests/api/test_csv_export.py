"""The API's score-log export is as spreadsheet-safe as the review desk's (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

from voiceid.testkit.engines import ScriptedEngine


def test_the_score_log_csv_escapes_cells_a_spreadsheet_would_run_as_formulas(make_api) -> None:
    api = make_api(engine=ScriptedEngine())
    formula_like = "-2-3"  # a valid speaker id (A-Z a-z 0-9 . _ : -) that a spreadsheet reads as a formula
    api.put_speaker(formula_like)
    api.put_speaker("plain-caller")
    for speaker in (formula_like, "plain-caller"):
        assert api.verify(speaker, b"never decoded")["decision"] == "NOT_ENROLLED"  # logged, nothing scored
    text = api.client.get("/v1/verifications.csv", headers=api.h("analyst")).text
    rows = {row["speaker_id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert "'-2-3" in rows and formula_like not in rows  # shown as text, never evaluated
    assert "plain-caller" in rows  # ordinary text is left alone
    assert rows["'-2-3"]["decision"] == "NOT_ENROLLED"
