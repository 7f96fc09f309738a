"""The README's error-code table is the one generated from ErrorCode (scripts/error_table.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from voiceid.api.error_docs import ERROR_HELP, error_table
from voiceid.errors import ErrorCode

ROOT = Path(__file__).resolve().parents[2]


def script():
    spec = importlib.util.spec_from_file_location("error_table", ROOT / "scripts" / "error_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_error_code_is_described():
    assert set(ERROR_HELP) == set(ErrorCode)
    assert all(text.strip() for text in ERROR_HELP.values())


def test_readme_table_equals_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    generator = script()
    assert generator.replace_table(readme, error_table()) == readme, (
        "README.md's error table is stale: run `PYTHONPATH=. python scripts/error_table.py --write`"
    )
    for code in ErrorCode:
        assert f"`{code.value}`" in readme.split(generator.START)[1].split(generator.END)[0]


def test_replace_table_touches_only_the_marked_region():
    generator = script()
    text = f"intro\n{generator.START}\nold\n{generator.END}\noutro\n"
    assert generator.replace_table(text, "NEW") == f"intro\n{generator.START}\nNEW\n{generator.END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        generator.replace_table("no markers here", "NEW")
