# Two commands for a new user: `make reanalyze` and `make test`.
# Both create .venv from the committed lock file on first use.
PYTHON ?= $(shell scripts/find-python)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.khe-installed
OUT    ?= results/reanalysis
ARGS   ?=
PYTEST_ARGS ?=
# test processes (pytest-xdist); the reanalyses the tests read run beside them (tests/conftest.py)
PYTEST_WORKERS ?= 2

NB_STAMP := $(VENV)/.khe-notebooks

.PHONY: reanalyze test test-slow lint format bench clean-venv notebooks

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || exit 2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

reanalyze: $(STAMP)
	$(BIN)/khe-bayes reanalyze --out $(OUT) $(ARGS)

# JupyterLab from the optional extra `notebooks`, installed into .venv on first use; the lock
# constrains every package it shares with khe-bayes, so the analysis environment is unchanged.
$(NB_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c requirements.lock \
		--no-build-isolation -e '.[notebooks]'
	@touch $(NB_STAMP)

notebooks: $(NB_STAMP)
	$(BIN)/jupyter lab notebooks/ $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
