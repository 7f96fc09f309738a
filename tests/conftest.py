"""Every shared fixture of the suite: settings, the real model (loaded once per test session), dev
speech from ../shared, and the API's databases (SQLite and the local PostgreSQL) and app factory.
Helpers that are not fixtures (stand-in engines, synthetic audio, the Api handle) live in
voiceid.testkit, which bench/ imports too."""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import delete

from voiceid.api.app import create_app
from voiceid.config import Settings, get_settings
from voiceid.engine import Engine
from voiceid.storage import models as m
from voiceid.storage.crypto import generate_key_text
from voiceid.storage.db import Database
from voiceid.testkit import postgres as testkit_postgres
from voiceid.testkit.api import ADMIN_KEY, SESSION_SECRET, Api
from voiceid.testkit.engines import NoInferenceEngine


def _pin_model_dirs() -> None:
    """The model directories default to `<data dir>/models/...`, and tests give each test (and each
    server or worker process they start) a data dir of its own. The model files stay where the test
    command fetched them, under the data dir this session started with: name them explicitly, in the
    environment the child processes inherit too, so no test re-fetches or misses them."""
    started_with = Settings()
    os.environ.setdefault("VOICEID_MODEL_DIR", str(started_with.model_dir))
    os.environ.setdefault("VOICEID_CM_MODEL_DIR", str(started_with.cm_model_dir))


_pin_model_dirs()

# The countermeasure's default runtime (bf16, compiled by Inductor) costs about 15 CPU-seconds of
# compilation in every process that loads it, and the suite starts many (two workers, servers, CLI
# runs). Tests run the ONNX reference instead, inherited by the processes they start; the default runtime
# is tested against that reference in tests/antispoof/test_fast_runtime.py, and end to end by the README
# walk-through (tests/docs/test_walkthrough.py), which runs on the defaults. VOICEID_CM_RUNTIME=auto
# in the environment runs the whole suite on it.
os.environ.setdefault("VOICEID_CM_RUNTIME", "manifest")


# Test state (SQLite databases, key stores, data dirs) on memory-backed storage when the machine has it:
# the key store commits with synchronous=FULL and a rollback journal, as production must, and on this
# machine's disk 1,200 such commits took 30 s against 1.5 s on tmpfs. No test is about surviving a power
# cut. Set before pytest makes its base temporary directory (lazily, on first use) and inherited by
# every tempfile user in the process; PYTEST_DEBUG_TEMPROOT or --basetemp still choose another place.
_MEMORY_TMP = Path("/dev/shm")
if _MEMORY_TMP.is_dir() and os.access(_MEMORY_TMP, os.W_OK | os.X_OK):
    tempfile.tempdir = str(_MEMORY_TMP)


# What a test needs beyond this checkout, read from its fixture closure so that a test cannot use the
# real model or dev speech without carrying the marker: `pytest -m "not model"` runs on a machine without
# model files (ECAPA, AASIST; PocketSphinx ships inside its wheel), `-m "not devdata"` without
# ../shared/data. Modules that load model files without these fixtures mark themselves (pytestmark).
MODEL_FIXTURES = frozenset({"engine"})  # Engine.from_settings: ECAPA, and the AASIST countermeasure with it
DEVDATA_FIXTURES = frozenset({"dev_dir", "dev_files"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        closure = set(getattr(item, "fixturenames", ()))
        if closure & MODEL_FIXTURES and item.get_closest_marker("model") is None:
            item.add_marker(pytest.mark.model)
        if closure & DEVDATA_FIXTURES and item.get_closest_marker("devdata") is None:
            item.add_marker(pytest.mark.devdata)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _heaviest_modules_first(items)


def _heaviest_modules_first(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (--dist loadscope hands out whole modules in collection order), start the
    modules with the most model inference first so that the last module handed out is a short one
    and no worker idles at the end waiting for a long one. Tests inside a module keep their order;
    a plain run keeps the collection order."""
    model_tests: dict[str, int] = {}
    for item in items:
        module = item.nodeid.split("::", 1)[0]
        model_tests[module] = model_tests.get(module, 0) + (item.get_closest_marker("model") is not None)
    items.sort(key=lambda item: -model_tests[item.nodeid.split("::", 1)[0]])  # stable: ties keep their order


@contextlib.contextmanager
def postgres_database(prefix: str = "voiceid_test") -> Iterator[str]:
    """voiceid.testkit's throw-away database, skipping the test when no server answers. Commits do
    not wait for the WAL flush (synchronous_commit off): no test here is about a server crash."""
    try:
        with testkit_postgres.postgres_database(prefix, durable=False) as url:
            yield url
    except testkit_postgres.PostgresUnavailable as exc:
        pytest.skip(str(exc))


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


# The API's databases and app factory (tests/api, tests/fraud, tests/replicas, tests/cli, tests/services).


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database per backend for the session; PostgreSQL gets a uniquely named database
    that is dropped at the end. Skipped (with the reason) only when no server can be reached."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'voiceid.db'}"
        Database(url).migrate()
        yield url
        return
    with postgres_database() as url:
        db = Database(url)
        db.migrate()
        db.dispose()
        yield url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    """Direct access to the tables, emptied before each test."""
    database = Database(db_url)
    with database.transaction() as session:
        tables = (
            m.EnrolmentEmbedding,
            m.Verification,
            m.Speaker,
            m.ApiKey,
            m.PinnedDecisionData,
            m.WebhookDelivery,
            m.SelfCalibrationSnapshot,
            m.Challenge,
            # Not tied to a speaker row: an earlier test's open item would show in this test's queue.
            m.ReviewItem,
            # A snapshot names objects the deletes above remove without the change feed.
            m.IndexSnapshotChunk,
            m.IndexSnapshotRow,
        )
        for table in tables:
            session.execute(delete(table))
    yield database
    database.dispose()


@pytest.fixture(scope="session")
def asnorm_from_the_first_caller(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A calibration file whose population AS-norm regime starts at 0 enrolled callers, for tests of the
    cohort's mechanics with a handful of scripted voices (the shipped file scores those on the raw cosine)."""
    from voiceid.testkit.calibrations import synthetic_calibration
    from voiceid.verify.calibration import save_calibrations

    rng = np.random.default_rng(7)
    fits = [
        synthetic_calibration(rng, (4.0, 1.0), (0.0, 1.0), 2000, 50_000, channel=channel, norm="as-norm")
        for channel in ("phone", "wideband")
    ]
    path = tmp_path_factory.mktemp("asnorm") / "asnorm-calibration.json"  # read-only: fitted once
    save_calibrations(fits, path)
    return path


@pytest.fixture
def make_api(db: Database, db_url: str, settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Api]]:
    opened: list[TestClient] = []

    def make(engine: object | None = None, pin_thresholds: bool = True, **overrides: object) -> Api:
        values: dict[str, object] = {
            "data_dir": tmp_path / "data",
            "database_url": db_url,
            "admin_key": SecretStr(ADMIN_KEY),
            "encryption_key": SecretStr(generate_key_text()),
            "session_secret": SecretStr(SESSION_SECRET),
            # Explicit, as PostgreSQL deployments must set it (a key store of the test's own).
            "keystore_url": f"sqlite:///{tmp_path / 'data' / 'keystore.db'}",
            "enrol_min_speech_s": 4.0,
            # Tests that are not about the per-speaker attempt limit make many attempts in a second.
            "attempt_rate_limit": 1000,
            "inference_workers": 2,
            "inference_queue": 8,
        }
        if not isinstance(engine, Engine):
            # Scripted vectors are raw cosine material: no cohort normalisation, and thresholds
            # pinned so the decision tests do not move when the shipped calibration is refitted.
            # A scripted engine has no G.711 view of its audio to embed: no phone view either.
            values.update(score_norm="none", enrol_phone_view=False)
            if pin_thresholds:
                values.update(accept_threshold=0.45, reject_threshold=0.30)
        values.update(overrides)
        app_settings = settings.model_copy(update=values)
        if engine is None:
            engine = NoInferenceEngine()
        client = TestClient(create_app(app_settings, engine=engine))  # type: ignore[arg-type]
        client.__enter__()
        opened.append(client)
        keys = {"admin": ADMIN_KEY}
        for role in ("ivr", "enrolment", "analyst"):
            r = client.post("/v1/api-keys", json={"role": role}, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert r.status_code == 201, r.text
            keys[role] = r.json()["key"]
        return Api(client, keys, client.app.state.service)  # type: ignore[attr-defined]

    yield make
    for client in opened:
        client.__exit__(None, None, None)
