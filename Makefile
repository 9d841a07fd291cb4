# Two commands for a new user: `make reanalyze` and `make test`.
# Both create .venv from the committed lock file on first use.
PYTHON ?= $(shell scripts/find-python)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.khe-installed
OUT    ?= results/reanalysis
ARGS   ?=
PYTEST_ARGS ?=

.PHONY: reanalyze test test-slow lint format bench clean-venv

$(STAMP): requirements.lock pyproject.toml
	@test -n "$(PYTHON)" || exit 2
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

reanalyze: $(STAMP)
	$(BIN)/khe-bayes reanalyze --out $(OUT) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
