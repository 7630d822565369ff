# onionpost developer entry points. `make demo` and `make test` set up everything they need.
PYTHON ?= python3
FUZZ_SECONDS ?= 60
# `make chaos`: seconds of traffic and faults, endpoints, mailboxes (ONIONPOST_CHAOS_SEED=<seed> replays).
CHAOS_SECONDS   ?= 3600
CHAOS_ENDPOINTS ?= 6
CHAOS_MAILBOXES ?= 2
# `make soak`: seconds of steady traffic (or ONIONPOST_SOAK_SECONDS).
SOAK_SECONDS    ?= $(or $(ONIONPOST_SOAK_SECONDS),3600)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install check test lint bench fuzz demo vectors tor chaos soak clean

install: $(STAMP)

# Reinstalled when the version changes, so the installed metadata says it too.
$(STAMP): pyproject.toml src/onionpost/__init__.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# tor from the Debian package (needed by the tests marked `tor`, the demo and the benchmarks).
tor:
	@scripts/ensure-tor

test: install tor
	$(BIN)/python -m pytest

# Before a commit: lint, then every test that needs no tor (about a minute, no tor installed).
check: lint
	$(BIN)/python -m pytest -q -m "not tor"

lint: install
	$(BIN)/ruff check src tests bench fuzz tools
	$(BIN)/ruff format --check src tests bench fuzz tools
	$(BIN)/mypy --strict src tools

bench: install tor
	$(BIN)/python -m bench

# Every fuzz target for FUZZ_SECONDS each, one per core at a time; logs and crashes in .fuzz/.
fuzz: install
	$(BIN)/python -m fuzz all --seconds $(FUZZ_SECONDS)

# Regenerate the protocol vectors; fails if any byte changed from what is committed.
vectors: install
	$(BIN)/python -m tools.vectorgen protocol-spec/vectors
	git diff --exit-code -- protocol-spec/vectors

demo: install tor
	$(BIN)/python examples/demo.py

# Endpoints and mailboxes on a private Tor network under a seeded schedule of faults,
# then quiescence and the history's checks; the summary names the seed (README).
chaos: install tor
	$(BIN)/python -m onionpost.testing.chaos --seconds $(CHAOS_SECONDS) \
		--endpoints $(CHAOS_ENDPOINTS) --mailboxes $(CHAOS_MAILBOXES)

# Two endpoints and a mailbox under steady traffic; fails on RSS, fd or WAL growth (README).
soak: install tor
	$(BIN)/python -m onionpost.testing.soak --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .fuzz build src/*.egg-info
