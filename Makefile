# Two entry points: `make serve` (install, fetch the model, start the service on SQLite) and
# `make test` (install, fetch the model, make sure PostgreSQL is up, run the whole suite).
# `make serve PORT=8080 HOST=0.0.0.0` chooses where it listens (default: VOICEID_PORT / VOICEID_HOST,
# else 127.0.0.1:8000).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.voiceid-installed
export VOICEID_DEV_DATA_DIR ?= $(abspath ../shared/data)
# The suite runs on this many pytest-xdist workers, one test module per worker at a time (loadscope:
# module-scoped fixtures are built once), in the order tests/conftest.py gives them: the modules with the
# most model inference first, so no long one starts last. Each worker loads the model once; 2 fits 2 cores.
PYTEST_WORKERS ?= 3

.PHONY: install model serve test lint bench eval walkthrough

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	$(BIN)/python -c "import voiceid, torch, torchaudio, speechbrain, silero_vad"
	touch $(STAMP)

install: $(STAMP)

model: install
	$(BIN)/voiceid models fetch

serve: model
	$(BIN)/voiceid serve $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

# Runs the README walk-through against a fresh server and fails when its output differs from the
# README's (ids and times masked; docs/walkthrough.sh).
walkthrough: model
	bash docs/walkthrough.sh --check

test: model
	bash scripts/ensure-services.sh
	$(BIN)/ruff check voiceid tests bench
	$(BIN)/mypy voiceid
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

lint: install
	$(BIN)/ruff check voiceid tests bench
	$(BIN)/mypy voiceid
	$(BIN)/lint-imports
