"""A newcomer's misconfigurations, run through the real `voiceid` program (a subprocess of
`python -m voiceid.cli`, the console entry's `main`): each ends on ONE line on stderr naming the
error code, what is wrong and what to do, with a non-zero exit status and no traceback; `--debug`
(or VOICEID_DEBUG=1) prints the traceback too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from voiceid.storage.crypto import generate_key_text
from voiceid.testkit.servers import free_port

LONG_SECRET = "first-hour-session-secret-0123456789-abcdef"


def voiceid(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `voiceid ARGS` with only the VOICEID_* settings given (its own data dir, no model files unless
    VOICEID_MODEL_DIR names some), as a user would in a fresh shell."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VOICEID_")}
    clean.update(
        {
            "VOICEID_DATA_DIR": str(tmp_path / "data"),
            "VOICEID_MODEL_DIR": str(tmp_path / "no-models"),
            "COLUMNS": "200",
            **env,
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "voiceid.cli", *args], capture_output=True, text=True, env=clean, timeout=300
    )


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The one line the failure printed (uvicorn's INFO lines of `serve` aside)."""
    assert done.returncode not in (0, None), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip() and not line.startswith("INFO:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def assert_one_line(done: subprocess.CompletedProcess[str], code: str, *words: str) -> str:
    line = error_line(done)
    assert line.startswith(f"error {code}: "), line
    what, _, fix = line.partition("; fix: ")
    assert what.removeprefix(f"error {code}: ").strip() and fix.strip(), f"no problem or no hint in {line!r}"
    for word in words:
        assert word in line, (word, line)
    return line


def test_an_unknown_backend_names_the_variable_and_the_allowed_values(tmp_path):
    done = voiceid(tmp_path, "keys", "list", VOICEID_INFERENCE_BACKEND="nonsense")
    line = assert_one_line(done, "CONFIGURATION_ERROR", "VOICEID_INFERENCE_BACKEND='nonsense'", "'onnx-int8'")
    assert "validation error" not in line and "pydantic" not in line
    assert done.returncode == 2


def test_a_setting_out_of_its_range_names_the_variable(tmp_path):
    done = voiceid(tmp_path, "worker", "--once", VOICEID_INFERENCE_WORKERS="0")
    assert_one_line(done, "CONFIGURATION_ERROR", "VOICEID_INFERENCE_WORKERS='0'", "greater than or equal to 1")


@pytest.mark.parametrize(
    ("key", "says"),
    [("abc", "must decode to 32 bytes, not 2"), (generate_key_text()[:20], "must decode to 32 bytes")],
    ids=["2-bytes", "truncated-key"],  # fixed ids: a random key in the id differs between xdist workers
)
def test_a_malformed_encryption_key_says_how_to_make_one(tmp_path, key, says):
    done = voiceid(tmp_path, "keys", "list", VOICEID_ENCRYPTION_KEY=key)
    line = assert_one_line(done, "CONFIGURATION_ERROR", "VOICEID_ENCRYPTION_KEY", says, "urlsafe_b64encode")
    assert key not in line.partition("; fix: ")[0]  # the secret itself is never echoed


def test_postgresql_without_the_shared_secrets_names_them(tmp_path):
    done = voiceid(tmp_path, "db", "upgrade", VOICEID_DATABASE_URL="postgresql://voiceid@127.0.0.1:5432/voiceid")
    assert_one_line(
        done, "CONFIGURATION_ERROR", "VOICEID_ENCRYPTION_KEY", "VOICEID_SESSION_SECRET", "VOICEID_KEYSTORE_URL"
    )


def test_an_unreachable_database_hides_the_password(tmp_path):
    done = voiceid(
        tmp_path,
        "db",
        "upgrade",
        VOICEID_DATABASE_URL=f"postgresql://voiceid:hunter2@127.0.0.1:{free_port()}/voiceid",
        VOICEID_ENCRYPTION_KEY=generate_key_text(),
        VOICEID_SESSION_SECRET=LONG_SECRET,
        VOICEID_KEYSTORE_URL=f"sqlite:///{tmp_path / 'keystore.db'}",
    )
    line = assert_one_line(done, "DATABASE_UNAVAILABLE", "127.0.0.1", "VOICEID_DATABASE_URL")
    assert "hunter2" not in done.stderr and "***" in line


def test_a_corrupt_model_file_at_service_start(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("hyperparams.yaml", "embedding_model.ckpt", "mean_var_norm_emb.ckpt"):
        (models / name).write_text("not the pinned file\n")
    done = voiceid(
        tmp_path, "speakers", "verify", "someone", str(models / "hyperparams.yaml"), VOICEID_MODEL_DIR=str(models)
    )
    assert_one_line(done, "MODEL_FILE_CORRUPT", "hyperparams.yaml", "voiceid models fetch")


def test_serve_with_a_missing_model_fails_in_one_line_not_inside_uvicorn(tmp_path):
    # The model loads in the app's lifespan, inside uvicorn, which would log the traceback and exit 3.
    done = voiceid(tmp_path, "serve", "--port", str(free_port()))
    assert_one_line(done, "MODEL_FILE_MISSING", str(tmp_path / "no-models"), "VOICEID_MODEL_DIR")
    assert done.returncode == 2


@pytest.mark.parametrize("how", ["option", "environment"])
def test_debug_prints_the_traceback_as_well(tmp_path, how):
    args = ("--debug", "keys", "list") if how == "option" else ("keys", "list")
    extra = {} if how == "option" else {"VOICEID_DEBUG": "1"}
    done = voiceid(tmp_path, *args, VOICEID_INFERENCE_BACKEND="nonsense", **extra)
    assert done.returncode == 2
    assert "Traceback (most recent call last)" in done.stderr and "ValidationError" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error CONFIGURATION_ERROR: VOICEID_INFERENCE_BACKEND")
