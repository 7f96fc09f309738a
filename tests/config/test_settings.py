"""voiceid/config.py: every setting in one section, described, documented in the README's generated
table; the model directories follow the data dir; `voiceid serve` listens where VOICEID_HOST /
VOICEID_PORT say unless its options say otherwise."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from voiceid.api.server import server_config
from voiceid.config import SECTIONS, Settings

ROOT = Path(__file__).resolve().parents[2]


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("settings_table", ROOT / "scripts" / "settings_table.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No VOICEID_* variable of the test session (the conftest pins the model dirs) leaks in."""
    for name in ("VOICEID_DATA_DIR", "VOICEID_MODEL_DIR", "VOICEID_CM_MODEL_DIR", "VOICEID_HOST", "VOICEID_PORT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_every_setting_is_in_exactly_one_section_and_described():
    seen: dict[str, str] = {}
    for section in SECTIONS:
        assert section.__doc__ and section.__doc__.strip(), f"{section.__name__} has no title"
        for name, info in section.model_fields.items():
            assert name not in seen, f"{name} is in {seen[name]} and {section.__name__}"
            seen[name] = section.__name__
            assert info.description and info.description.strip(), f"{name} has no description"
    assert list(seen) == list(Settings.model_fields), "SECTIONS and the bases of Settings disagree"
    assert set(Settings.__bases__) - set(SECTIONS) == {Settings.__bases__[-1]}  # only BaseSettings besides


def test_readme_table_equals_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    generator = script()
    assert generator.replace_table(readme, generator.settings_table()) == readme, (
        "README.md's settings table is stale: run `PYTHONPATH=. python scripts/settings_table.py --write`"
    )
    table = readme.split(generator.START)[1].split(generator.END)[0]
    for name in Settings.model_fields:
        assert f"| `VOICEID_{name.upper()}` |" in table
    for section in SECTIONS:
        assert f"| **{generator.section_title(section)}** | | |" in table


def test_table_defaults_are_the_values_an_operator_would_set():
    generator = script()
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip()
        for line in generator.settings_table().splitlines()
        if line.startswith("| `VOICEID_")
    }
    assert rows["VOICEID_PORT"] == "`8000`"
    assert rows["VOICEID_VERIFY_MIN_SPEECH_S"] == "`1`"
    assert rows["VOICEID_ENROL_PHONE_VIEW"] == "`true`"
    assert rows["VOICEID_INFERENCE_BACKEND"] == "`auto`"
    assert rows["VOICEID_SIP_ALLOWED_NETWORKS"] == "`127.0.0.1/32,::1/128`"
    assert rows["VOICEID_WEBHOOK_ALLOWED_HOSTS"] == "empty"
    assert rows["VOICEID_DATABASE_URL"] == "unset"
    assert rows["VOICEID_MODEL_DIR"] == "`<data dir>/models/spkrec-ecapa-voxceleb`"
    # Nothing machine-specific in the README: the user data dir is shown by its usual name.
    assert str(Path.home()) not in generator.settings_table()


def test_replace_table_touches_only_the_marked_region():
    generator = script()
    text = f"intro\n{generator.START}\nold\n{generator.END}\noutro\n"
    assert generator.replace_table(text, "NEW") == f"intro\n{generator.START}\nNEW\n{generator.END}\noutro\n"
    with pytest.raises(ValueError, match="markers"):
        generator.replace_table("no markers here", "NEW")


def test_the_model_directories_live_under_the_data_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path):
    clean_env.setenv("VOICEID_DATA_DIR", str(tmp_path / "one"))
    settings = Settings()
    assert settings.model_dir == tmp_path / "one" / "models" / "spkrec-ecapa-voxceleb"
    assert settings.cm_model_dir == tmp_path / "one" / "models" / "aasist"
    # Passed in directly, too (the tests' and benches' way).
    other = Settings(data_dir=tmp_path / "two")  # type: ignore[call-arg]
    assert other.model_dir.parent == tmp_path / "two" / "models"
    assert other.cm_model_dir.parent == tmp_path / "two" / "models"


def test_a_model_dir_that_is_set_wins_over_the_data_dir(clean_env: pytest.MonkeyPatch, tmp_path: Path):
    clean_env.setenv("VOICEID_DATA_DIR", str(tmp_path / "data"))
    clean_env.setenv("VOICEID_MODEL_DIR", str(tmp_path / "ecapa"))
    clean_env.setenv("VOICEID_CM_MODEL_DIR", str(tmp_path / "cm"))
    settings = Settings()
    assert (settings.model_dir, settings.cm_model_dir) == (tmp_path / "ecapa", tmp_path / "cm")


def test_serve_listens_on_the_settings_unless_the_options_say_otherwise(clean_env: pytest.MonkeyPatch):
    default = server_config(object(), Settings())
    assert (default.host, default.port) == ("127.0.0.1", 8000)
    clean_env.setenv("VOICEID_HOST", "0.0.0.0")
    clean_env.setenv("VOICEID_PORT", "8080")
    settings = Settings()
    configured = server_config(object(), settings)
    assert (configured.host, configured.port) == ("0.0.0.0", 8080)
    overridden = server_config(object(), settings, host="127.0.0.2", port=9000)
    assert (overridden.host, overridden.port) == ("127.0.0.2", 9000)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_passes_the_port_through():
    def serve_command(*args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k not in {"PORT", "HOST"}}  # make reads the environment
        out = subprocess.run(
            ["make", "-n", "-C", str(ROOT), "serve", *args], capture_output=True, text=True, check=True, env=env
        ).stdout
        [line] = [line for line in out.splitlines() if "voiceid serve" in line]
        return line

    assert serve_command("PORT=8080").split()[-2:] == ["--port", "8080"]
    assert "--port" not in serve_command() and "--host" not in serve_command()
    assert "--host 0.0.0.0" in serve_command("HOST=0.0.0.0")
