"""The README walk-through: docs/walkthrough.sh runs the README's command block verbatim and its output
must be the README's shown output, timestamps and verification ids masked (scripts/walkthrough.py)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("walkthrough", ROOT / "scripts" / "walkthrough.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_holds_the_command_block_and_its_output():
    walkthrough = script()
    readme = (ROOT / "README.md").read_text()
    commands = walkthrough.block_after(readme, walkthrough.COMMANDS)
    output = walkthrough.block_after(readme, walkthrough.OUTPUT)
    assert "voiceid serve --port 8765" in commands and "Content-Type: audio/basic" in commands
    # Every step the commands announce is in the shown output, in the same order.
    shown = [line for line in output.splitlines() if line.startswith("# ")]
    announced = [line for line in commands.splitlines() if line.startswith('echo "# ')]
    assert len(shown) == len(announced) >= 5
    for header, echo in zip(shown, announced, strict=True):
        assert echo.startswith(f'echo "{header.replace(chr(34), chr(92) + chr(34))}"'), (header, echo)


def test_masking_hides_ids_and_times_only():
    walkthrough = script()
    line = (
        '{"verification_id":"1b1cd9ffbf9949948b6e6e62de5f16f5","granted_at":"2026-12-04T20:50:48.418022Z",'
        '"llr":6.47,"cohort":"f6c25ba0ab54e594a90f30de494be38590dd9a8861a4b3c83a431c11dd647d7f"}'
    )
    masked = walkthrough.mask(line)
    assert '"verification_id":"<id>"' in masked and '"granted_at":"<time>"' in masked
    assert '"llr":6.47' in masked and "f6c25ba0ab54e594a90f30de494be38590dd9a8861a4b3c83a431c11dd647d7f" in masked
    other_run = line.replace("1b1cd9ffbf9949948b6e6e62de5f16f5", "bda9ebd2998c403fbdd69b1694c30b33").replace(
        "20:50:48.418022", "21:01:02.5"
    )
    assert walkthrough.differences(line, other_run) == []
    assert walkthrough.differences(line, line.replace("6.47", "6.57"))  # a score that moved is a difference
    # bf16 rounding differs between CPUs and compilations: a hundredth (and 1 %) is not a move
    assert walkthrough.differences(line, line.replace("6.47", "6.48")) == []
    assert walkthrough.differences(line, line.replace('"llr":6.47', '"llr":"6.47"'))  # a type change is
    assert walkthrough.numbers_agree(0.5422, 0.5365) and not walkthrough.numbers_agree(0.0089, 0.045)
    assert walkthrough.differences(line, line + "\nextra")


def test_block_after_needs_its_marker_and_a_closed_block():
    walkthrough = script()
    marker = walkthrough.COMMANDS
    assert walkthrough.block_after(f"intro\n{marker}\n```bash\necho hi\n```\n", marker) == "echo hi\n"
    with pytest.raises(ValueError, match="marker"):
        walkthrough.block_after("no marker", marker)
    with pytest.raises(ValueError, match="not closed"):
        walkthrough.block_after(f"{marker}\n```\necho hi\n", marker)


@pytest.mark.model
@pytest.mark.devdata
def test_the_walkthrough_reproduces_the_readme():
    from voiceid.models.registry import native_bf16

    if not (ROOT / ".venv" / "bin" / "voiceid").exists():
        pytest.skip("the README's commands run .venv/bin/voiceid: `make install` first")
    if not native_bf16():
        pytest.skip("the README shows the default backend of a CPU with native bf16 (torch-bf16)")
    if shutil.which("curl") is None:
        pytest.skip("the README's commands use curl")
    run = subprocess.run(
        ["bash", str(ROOT / "docs" / "walkthrough.sh"), "--check"], capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
