# supplybus: `make demo` runs the main job, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
# two workers, each with its own embedded broker and database: the tests mostly wait on
# group joins and idle timeouts, so two share the 2 cores well (PYTEST_ARGS= for one process)
PYTEST_ARGS ?= -n 2 --durations=15

.PHONY: install test demo bench lint typecheck up down status clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m supplybus.ops.typecheck

typecheck: install
	$(BIN)/python -m supplybus.ops.typecheck

demo: install
	$(BIN)/python -m supplybus.ops.demo

bench: install
	$(BIN)/python -m supplybus.ops.bench

up: install
	$(BIN)/supplybus up

down: install
	$(BIN)/supplybus down

status: install
	$(BIN)/supplybus status

clean:
	-test -x $(BIN)/supplybus && $(BIN)/supplybus down
	rm -rf $(VENV) .supplybus .pytest_cache .ruff_cache .mypy_cache .hypothesis *.egg-info build dist
