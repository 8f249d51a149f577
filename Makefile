# The two front doors: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test fuzz bench mutation clean

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or: make PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	@touch $@

demo: $(STAMP)
	$(BIN)/esg-leads demo

# On every core (pytest-xdist). --dist loadscope runs each test module whole on one worker,
# so a module's shared fixtures (a generated world, a replay) are built once; modules go out
# in collection order (tests/conftest.py puts the long end-to-end ones first), not xdist's
# default of the most tests first, which left the long modules of few tests for the end.
# One worker more than cores: end-to-end tests wait on brokers, children and chaos
# schedules about a fifth of their time, and the extra worker runs meanwhile (2 cores,
# quiet: 3 min 38 s with two workers, 3 min 04-12 s with three or four, in one hour).
# One process: `make test TEST_WORKERS=0`.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null) && echo $$((n + 1)) || echo auto)
# Where the environment sets PYTHONDONTWRITEBYTECODE (this machine's does), every worker
# and every esg-leads child compiled our modules and rewrote every test module's asserts
# again: ~3 CPU-s per worker (runs in turn: 3 min 36 s without, 3 min 23 s with). Compiled
# files go to the venv (ignored by git).
test: $(STAMP)
	PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(CURDIR)/$(VENV)/pycache \
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# The flow under thousands of hostile streams (tests/flows/test_fuzz.py); minutes, not CI.
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=explore FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-3000} $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/flows/test_fuzz.py tests/schemas/test_codec.py --hypothesis-show-statistics

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Mutation testing of the modules that decide (tens of minutes; not part of `make test`).
# One module at a time, at idle priority: `make mutation MODULES="lead_state compliance"`.
MUTATION_STAMP := $(VENV)/.mutation-installed
$(MUTATION_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test,mutation]'
	@touch $@

mutation: $(MUTATION_STAMP)
	nice -n 19 $(BIN)/python tests/mutation/run.py $(MODULES)

clean:
	rm -rf $(VENV) build *.egg-info .demo
