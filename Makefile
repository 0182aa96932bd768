# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# hnswlib builds from source: keep the binary portable (its setup.py otherwise adds -march=native).
export HNSWLIB_NO_NATIVE := 1

.PHONY: setup browser demo kiosk test test-fast device-test clean

# A fresh venv each time the stamp is missing, so an interrupted install never leaves a broken one.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[converter,dev,ray]"
	touch $@

setup: $(VENV)/.installed

# make demo QUICK=1: a first look in minutes (short teacher budget, one student, small search encoder)
demo: setup
	$(BIN)/edge-rec demo $(if $(QUICK),--quick) $(ARGS)

# The kiosk sample app on the demo bundle (the full one if made, else the quick one), syncing from the demo
# channel served on loopback: open http://127.0.0.1:8080/
KIOSK_PORT ?= 8080
kiosk: setup
	@root=artifacts/ml-1m; [ -f $$root/bundle/manifest.json ] || root=artifacts/ml-1m-quick; \
	[ -f $$root/bundle/manifest.json ] || { echo "no demo bundle yet: run 'make demo QUICK=1' (minutes) or 'make demo'"; exit 1; }; \
	$(BIN)/edge-rec serve $$root/channel --port 8765 --quiet & serve=$$!; trap 'kill $$serve' EXIT INT TERM; \
	$(BIN)/python sample_apps/kiosk/server.py --state $$root/kiosk --key artifacts/keys/edge-rec.pub \
	    --bundle $$root/bundle --channel http://127.0.0.1:8765 --sync-every 30 --port $(KIOSK_PORT)

# Debian's Chromium for the kiosk's browser tests (installed when running as root; without it those tests skip,
# or fail when CI=true).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	    echo "no Chromium (apt-get install chromium): the kiosk's browser tests will skip"

test: setup browser
	$(BIN)/python -m pytest $(ARGS)

test-fast: setup browser
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
