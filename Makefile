# onionpost developer entry points. `make demo` and `make test` set up everything they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install test lint bench demo vectors tor clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# tor from the Debian package (needed by the tests marked `tor`, the demo and the benchmarks).
tor:
	@scripts/ensure-tor

test: install tor
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy --strict src

bench: install tor
	$(BIN)/python -m bench

# Regenerate the protocol vectors; fails if any byte changed from what is committed.
vectors: install
	$(BIN)/python -m onionpost.proto._vectorgen protocol-spec/vectors
	git diff --exit-code -- protocol-spec/vectors

demo: install tor
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build src/*.egg-info
