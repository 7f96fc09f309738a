"""What an installed (non-editable) copy of voiceid holds: the container image runs `pip install .`,
and setuptools' package discovery only picks up directories with an `__init__.py`. A missing one
worked in the editable checkout and broke the image (voiceid.models was absent from the wheel)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import voiceid

ROOT = Path(voiceid.__file__).resolve().parent
PYPROJECT = ROOT.parent / "pyproject.toml"


def test_every_code_directory_is_a_package_or_shipped_as_package_data() -> None:
    package_data = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-data"]["voiceid"]
    shipped_as_data = {Path(pattern).parent.as_posix() for pattern in package_data if pattern.endswith(".py")}
    missing = sorted(
        rel
        for directory in {p.parent for p in ROOT.rglob("*.py")}
        if not (directory / "__init__.py").is_file()
        and (rel := directory.relative_to(ROOT).as_posix()) not in shipped_as_data
    )
    assert missing == [], f"add an __init__.py (or list the files as package data): {missing}"
