# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# hnswlib builds from source: keep the binary portable (its setup.py otherwise adds -march=native).
export HNSWLIB_NO_NATIVE := 1

.PHONY: setup demo test test-fast clean

# A fresh venv each time the stamp is missing, so an interrupted install never leaves a broken one.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[converter,dev]"
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
