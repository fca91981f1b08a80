# Two commands work on a fresh machine with nothing installed:
#   make quickstart   create the virtual environment if missing, install, run the main job on the embedded default
#   make test         create the virtual environment if missing, install, run every test
# VENV overrides the environment's location (CI keys one on the dependency pins, see .ci/run).
VENV ?= .venv
# The interpreter that creates the environment: PYTHON=... wins; otherwise the first supported one on PATH
# (3.11 is the version CI runs; torch 2.9 and torch_xla 2.9 publish wheels for 3.10-3.13).
SUPPORTED := 3.11 3.12 3.13 3.10
supported = $(shell command -v $(1) >/dev/null 2>&1 && $(1) -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 13))' >/dev/null 2>&1 && echo $(1))
PYTHON ?= $(firstword $(foreach v,$(SUPPORTED),$(call supported,python$(v))) $(call supported,python3))
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rae_xla-installed
PYTEST_ARGS ?=

.PHONY: install quickstart test clean

install: $(STAMP)

# Reinstall whenever the pins change. torch 2.9.0 (the version torch_xla 2.9 needs) is a CUDA build on
# PyPI: the first install downloads about 4 GB; later runs reuse the environment.
$(STAMP): setup.py
	@test -x $(PY) || test -n "$(PYTHON)" || { echo "No supported Python found: rae_xla needs Python 3.10, 3.11, 3.12 or 3.13 (python3.X on PATH); install one (e.g. apt install python3.12-venv, brew install python@3.12, or pyenv install 3.12) or pass PYTHON=/path/to/python3.X." >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

quickstart: install
	$(PY) -m rae_xla.main --config=configs/quickstart.py:part=all --workdir=runs/quickstart

test: install
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
