"""The countermeasure's fitted files (PAD back-end, thresholds) are JSON read at start-up: one reader
that turns an unreadable file into a configuration error naming it, one writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from voiceid.errors import ErrorCode, VoiceIdError


def read_json_file(path: Path, what: str) -> Any:
    """The JSON in `path`; CONFIGURATION_ERROR "cannot read <what> <path>: ..." when it is missing or broken."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VoiceIdError(ErrorCode.CONFIGURATION_ERROR, f"cannot read {what} {path}: {exc}") from exc


def write_json_file(path: Path, data: Any, indent: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
