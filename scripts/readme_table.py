"""What the README table generators share (scripts/error_table.py, scripts/settings_table.py): replace
the region between two markers, and the `[--write]` command line around a table function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def replace_between(text: str, start_marker: str, end_marker: str, table: str) -> str:
    """`text` with only the region between the two markers replaced by `table`."""
    head, start, rest = text.partition(start_marker)
    _, end, tail = rest.partition(end_marker)
    if not start or not end:
        raise ValueError(f"README.md lacks the markers {start_marker!r} ... {end_marker!r}")
    return f"{head}{start_marker}\n{table}\n{end_marker}{tail}"


def run(doc: str | None, table: Callable[[], str], readme: Path, start_marker: str, end_marker: str) -> None:
    """Print the table, or with --write rewrite it in place in `readme`."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="rewrite the table in README.md")
    args = parser.parse_args()
    text = table()
    if args.write:
        readme.write_text(replace_between(readme.read_text(), start_marker, end_marker, text))
        print(f"updated {readme}", file=sys.stderr)
    else:
        print(text)
