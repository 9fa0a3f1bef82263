# `make demo` and `make test` set everything up on a fresh machine (system libraries for
# offscreen rendering, the virtual environment, the project) and then run.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export MUJOCO_GL ?= egl
# torch==2.13.0 is a CPU wheel on this machine's disk; without it pip would fetch a CUDA build.
PIP_FIND := $(if $(wildcard /opt/wheels/torch-*.whl),--find-links /opt/wheels,)

.PHONY: demo test test-slow bench lint sysdeps clean

sysdeps:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml scripts/install_system_deps.sh
	@bash scripts/install_system_deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(PIP_FIND) -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/embodia demo --out out/demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/pytest -q -m "not slow"

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/env_step.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) out .pytest_cache
