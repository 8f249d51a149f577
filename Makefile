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
# One process: `make test TEST_WORKERS=0`.
TEST_WORKERS ?= auto
test: $(STAMP)
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
