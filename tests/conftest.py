"""Shared fixtures: the real model is loaded once per test session; dev speech comes from ../shared."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voiceid.config import Settings, get_settings
from voiceid.engine import Engine


def _pin_model_dirs() -> None:
    """The model directories default to `<data dir>/models/...`, and tests give each test (and each
    server or worker process they start) a data dir of its own. The model files stay where the test
    command fetched them, under the data dir this session started with: name them explicitly, in the
    environment the child processes inherit too, so no test re-fetches or misses them."""
    started_with = Settings()
    os.environ.setdefault("VOICEID_MODEL_DIR", str(started_with.model_dir))
    os.environ.setdefault("VOICEID_CM_MODEL_DIR", str(started_with.cm_model_dir))


_pin_model_dirs()

POSTGRES_ADMIN_DSN = os.environ.get(
    "VOICEID_TEST_POSTGRES_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"
)


@contextlib.contextmanager
def postgres_database(prefix: str = "voiceid_test") -> Iterator[str]:
    """A PostgreSQL database of its own (unique name), dropped on exit even if connections remain:
    two test runs on one machine never share tables. Skips the test when no server answers."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL not reachable ({POSTGRES_ADMIN_DSN}): {str(exc).strip()}")
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    info = admin.info
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{info.user}@{info.host}:{info.port}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def fresh_postgres() -> Iterator[Callable[[], str]]:
    """Factory of PostgreSQL databases of their own, all dropped at the end of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda: stack.enter_context(postgres_database())


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Engine:
    """The product engine on the real ECAPA model (fetched by the test command)."""
    return Engine.from_settings(settings)


@pytest.fixture(scope="session")
def dev_dir(settings: Settings) -> Path:
    path = settings.dev_data_dir / "dev"
    if not (path / "manifest.csv").is_file():
        pytest.fail(f"dev speech not found at {path}; set VOICEID_DEV_DATA_DIR to ../shared/data")
    return path


@pytest.fixture(scope="session")
def dev_files(dev_dir: Path) -> dict[str, list[Path]]:
    """speaker_id -> that speaker's utterance files, in manifest order."""
    files: dict[str, list[Path]] = defaultdict(list)
    with (dev_dir / "manifest.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            files[row["speaker_id"]].append(dev_dir / row["path"])
    return dict(files)


def tone(seconds: float, rate: int = 16000, freq: float = 220.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, subtype=subtype, format=fmt)
    return buf.getvalue()


def settle_lazy_modules() -> None:
    """Hypothesis scans sys.modules for `__file__`; SpeechBrain's lazy modules answer that lookup by
    importing optional integrations (k2) and raise ImportError. Giving them a `__file__` of None
    keeps property-based tests working once the model is loaded (call it after loading)."""
    import sys

    lazy = sys.modules.get("speechbrain.utils.importutils")
    if lazy is None:
        return
    for module in list(sys.modules.values()):
        if isinstance(module, lazy.LazyModule) and "__file__" not in vars(module):
            vars(module)["__file__"] = None


@pytest.fixture(autouse=True)
def _lazy_modules_have_a_file() -> None:
    settle_lazy_modules()
