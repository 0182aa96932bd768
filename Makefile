# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# hnswlib builds from source: keep the binary portable (its setup.py otherwise adds -march=native).
export HNSWLIB_NO_NATIVE := 1

.PHONY: setup demo test test-fast clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[converter,dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/edge-rec demo $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

test-fast: setup
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) artifacts .pytest_cache
