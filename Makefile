# Two commands work on a fresh machine with nothing installed:
#   make quickstart   create the virtual environment if missing, install, run the main job on the embedded default
#   make test         create the virtual environment if missing, install, run every test
# VENV overrides the environment's location (CI keys one on the dependency pins, see .ci/run).
VENV ?= .venv
PYTHON ?= python3.11
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rae_xla-installed
PYTEST_ARGS ?=

.PHONY: install quickstart test clean

install: $(STAMP)

# Reinstall whenever the pins change. torch 2.9.0 (the version torch_xla 2.9 needs) is a CUDA build on
# PyPI: the first install downloads about 4 GB; later runs reuse the environment.
$(STAMP): setup.py
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
