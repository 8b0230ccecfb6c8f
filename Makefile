# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Pinned here so pip takes the local CPU wheel; users get the open range from pyproject.
TORCH_PIN ?= torch==2.13.0

.PHONY: demo test check bench install install-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[test,ray,instruct,eval]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/steerlab demo

test: install
	$(BIN)/python -m pytest -q

# Lint, format check and types (ruff and mypy come with the test extra that `install` puts in).
check: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy src/steerlab

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
