"""The README walk-through as data: its command block (run verbatim by docs/walkthrough.sh) and its
shown output (compared with a fresh run's).

    python scripts/walkthrough.py commands          # print the README's command block
    python scripts/walkthrough.py check OUTPUT      # compare a run's output with the README's

Both blocks are the fenced code blocks right after their markers in README.md. Before comparing, both
sides are masked the same way, and only for what differs on every run by design:
- timestamps (ISO 8601, e.g. `2026-12-04T20:50:48.418022Z`) become `<time>`;
- 32-hex-digit ids (verification ids) become `<id>`.
Everything else, thresholds, decisions, reasons, model version and the hashes of the decision data
included, must match character for character: a change there is a change the README has to show. The
one allowance is for numbers computed by the networks (scores, margins): bf16 arithmetic rounds
differently on CPUs with and without AMX, and the kernels Inductor picks for the countermeasure vary
from one compilation to the next (its score moved by up to 0.006 between two runs on one machine), so
a number agrees when it is within one unit of its last printed digit plus 1 % of its size and 0.01
(`numbers_agree`): a CM score of 0.5422 against 0.5365 agrees, an LLR of 6.47 against 6.57 does not.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
COMMANDS = "<!-- walkthrough:commands (run verbatim by docs/walkthrough.sh) -->"
OUTPUT = "<!-- walkthrough:output (compared with a fresh run by docs/walkthrough.sh --check) -->"

_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")


def block_after(text: str, marker: str) -> str:
    """The body of the first fenced code block after `marker`."""
    _, found, rest = text.partition(marker)
    if not found:
        raise ValueError(f"README.md lacks the marker {marker!r}")
    lines = rest.lstrip("\n").splitlines()
    if not lines or not lines[0].startswith("```"):
        raise ValueError(f"no fenced code block right after {marker!r}")
    body: list[str] = []
    for line in lines[1:]:
        if line.startswith("```"):
            return "\n".join(body) + "\n"
        body.append(line)
    raise ValueError(f"the code block after {marker!r} is not closed")


def mask(text: str) -> str:
    return _ID.sub("<id>", _TIME.sub("<time>", text))


def _last_digit(number: float) -> float:
    """One unit of the last digit `number` is printed with (json.dumps / repr)."""
    text = repr(number)
    if "e" in text or "." not in text:
        return 0.0
    return float(10 ** -len(text.split(".")[1]))


def numbers_agree(a: float, b: float) -> bool:
    return abs(a - b) <= max(_last_digit(a), _last_digit(b)) + 0.01 * max(abs(a), abs(b)) + 0.01


def _agree(want: object, got: object) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return want == got
    if isinstance(want, float | int) and isinstance(got, float | int):
        return want == got if isinstance(want, int) and isinstance(got, int) else numbers_agree(want, got)
    if isinstance(want, dict) and isinstance(got, dict):
        return want.keys() == got.keys() and all(_agree(want[k], got[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(want) == len(got) and all(_agree(w, g) for w, g in zip(want, got, strict=True))
    return want == got


def _line_agrees(want: str, got: str) -> bool:
    if want == got:
        return True
    try:
        return _agree(json.loads(want), json.loads(got))
    except ValueError:
        return False


def differences(expected: str, actual: str) -> list[str]:
    """A unified diff of the masked texts (trailing blank lines ignored); empty when they agree, line by
    line, with the numbers of JSON lines compared by `numbers_agree`."""
    want = mask(expected).rstrip("\n").splitlines()
    got = mask(actual).rstrip("\n").splitlines()
    if len(want) == len(got) and all(_line_agrees(w, g) for w, g in zip(want, got, strict=True)):
        return []
    return list(difflib.unified_diff(want, got, "README.md", "this run", lineterm=""))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("commands", help="print the README's command block")
    check = sub.add_parser("check", help="compare a run's output with the README's")
    check.add_argument("output", type=Path)
    args = parser.parse_args()
    readme = README.read_text()
    if args.what == "commands":
        sys.stdout.write(block_after(readme, COMMANDS))
        return 0
    diff = differences(block_after(readme, OUTPUT), args.output.read_text())
    if diff:
        print("\n".join(diff))
        print("the walk-through's output differs from README.md (ids and times masked)", file=sys.stderr)
        return 1
    print("the walk-through's output matches README.md (ids and times masked)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
