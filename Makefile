# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs everything (system packages included).

VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.stem-loop-installed
SYSTEM_PACKAGES := libxc-dev libopenblas-dev

.PHONY: demo test bench docs lint install system clean

demo: $(STAMP)
	$(VENV)/bin/stem-loop demo

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(VENV)/bin/stem-loop bench acquisition
	$(VENV)/bin/stem-loop bench forward
	$(VENV)/bin/stem-loop bench inference
	$(VENV)/bin/stem-loop bench energetics
	$(PY) -m pytest -m slow

docs: $(STAMP)
	$(VENV)/bin/sphinx-build -W -b html docs docs/_build/html

lint: $(STAMP)
	$(VENV)/bin/ruff check stem_loop sim_devices tests benchmarks

install: $(STAMP)

# GPAW compiles against libxc and OpenBLAS; install them when missing (root on these machines).
system:
	@if ! dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES); \
	fi

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: the local CPU build; an unpinned torch pulls a multi-GB CUDA build.
# CC=g++: GPAW's C extension includes <algorithm>.
$(STAMP): pyproject.toml | system $(VENV)/bin/python
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	CC=g++ $(PIP) install -q -e '.[dev]'
	$(VENV)/bin/gpaw info | grep -q "libxc.*yes" || { echo "GPAW was built without libxc"; exit 1; }
	touch $@

clean:
	rm -rf $(VENV) docs/_build stem-loop-data
