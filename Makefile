# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# hnswlib builds from source: keep the binary portable (its setup.py otherwise adds -march=native).
export HNSWLIB_NO_NATIVE := 1

.PHONY: setup demo test test-fast device-test clean

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

# The device suite: a kit made here (a small bundle from a ML-1M slice, or KIT=dir to reuse one), run on
# x86_64 and then on emulated aarch64 with tflite-runtime and with ai-edge-litert.
KIT ?= .device-kit
REPORTS ?= .device-reports
device-test: setup
	test -f $(KIT)/reference.json || $(BIN)/python device_tests/prepare.py --out $(KIT)
	$(BIN)/python -m pytest device_tests --kit $(KIT) --report $(REPORTS)/x86_64.json -q -p no:cacheprovider
	HOST_PYTHON=$(BIN)/python bash device_tests/arm64/run.sh $(KIT) $(REPORTS)

clean:
	rm -rf $(VENV) artifacts .pytest_cache .arm64 .device-kit .device-reports
