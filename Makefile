# `make demo` and `make test` set everything up on a fresh machine (system libraries for
# offscreen rendering, the virtual environment, the project) and then run.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export MUJOCO_GL ?= egl
# torch==2.13.0 is a CPU wheel on this machine's disk; without it pip would fetch a CUDA build.
PIP_FIND := $(if $(wildcard /opt/wheels/torch-*.whl),--find-links /opt/wheels,)
# LeRobot (lerobot 0.6.1: dataset interop tests, the Meta-World comparison's ACT/diffusion
# training, lerobot-eval, scripts/lerobot/) needs Python >= 3.12 and torchvision, which cannot sit
# beside our torch wheel: it gets a side venv of its own, built from pyenv's 3.12 (LEROBOT_PYTHON
# overrides). Meta-World is pinned to ours (metaworld 3.1.1, mujoco 3.3.0) so both venvs simulate
# identically; lerobot[metaworld] pins metaworld==3.0.0 (pip refuses both), so the extra is
# spelled out instead: lerobot[dataset] + scipy + our metaworld (+ diffusion: diffusers;
# msgpack: scripts/lerobot/serve_policy.py's pipe). Large (5.7 GB, a CUDA torch
# build; 2 min 43 s from nothing here), so pip's cache is off: no second copy.
LEROBOT_VENV ?= .venv-lerobot
export LEROBOT_VENV
LEROBOT_PYTHON ?= $(or $(lastword $(sort $(wildcard /root/.pyenv/versions/3.12.*/bin/python))),$(shell command -v python3.12 2>/dev/null))
LEROBOT_PKGS := 'lerobot[training,dataset,diffusion]==0.6.1' 'scipy>=1.14,<2' metaworld==3.1.1 mujoco==3.3.0 \
	torch==2.11.0 torchvision==0.26.0 msgpack==1.2.4
# the stamp names the package list's hash: a changed list reinstalls
LEROBOT_STAMP := $(LEROBOT_VENV)/.installed-$(shell echo "$(LEROBOT_PKGS)" | md5sum | cut -c1-10)
# The public openpi client, for the policy server's compatibility tests. --no-deps: it pins
# numpy<2 (and dm-tree, pillow for parts we do not use), yet its websocket client runs on numpy 2.
OPENPI_CLIENT := openpi-client==0.1.2

.PHONY: demo test test-slow bench lint sysdeps clean lerobot-venv

sysdeps:
	@bash scripts/install_system_deps.sh

$(STAMP): pyproject.toml scripts/install_system_deps.sh
	@bash scripts/install_system_deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir $(PIP_FIND) -e '.[test]'
	$(PY) -m pip install --quiet --disable-pip-version-check --no-cache-dir --no-deps $(OPENPI_CLIENT)
	@touch $(STAMP)

$(LEROBOT_STAMP):
	@test -n "$(LEROBOT_PYTHON)" || { echo "lerobot-venv: no Python 3.12 found (looked for /root/.pyenv/versions/3.12.*/bin/python and python3.12); install one (pyenv install 3.12) or pass LEROBOT_PYTHON=/path/to/python3.12" >&2; exit 2; }
	@$(LEROBOT_VENV)/bin/python -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null || { rm -rf $(LEROBOT_VENV) && $(LEROBOT_PYTHON) -m venv $(LEROBOT_VENV); }
	$(LEROBOT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-cache-dir $(LEROBOT_PKGS)
	@touch $(LEROBOT_STAMP)

lerobot-venv $(LEROBOT_VENV): $(LEROBOT_STAMP)

# The demo: one sentence, planned by the brain, run step by step by the shipped policy through
# the layered runtime; prints plan and outcome, writes out/demo/run.mp4 and report.html. Exit
# code 1 (the task failed) still counts as a finished demo; errors (2) do not. If the checkpoint
# cannot be loaded it runs the scripted experts instead and says so (exit 3 when that succeeds).
DEMO_INSTRUCTION ?= open the drawer and put the red cube inside
DEMO_SEED ?= 1
DEMO_POLICY ?= checkpoints/arm7_flow_ensemble_chain
demo: $(STAMP)
	$(VENV)/bin/embodia run "$(DEMO_INSTRUCTION)" --seed $(DEMO_SEED) --policy $(DEMO_POLICY) \
		--fallback-expert --video out/demo/run.mp4 --report out/demo/report.html || { rc=$$?; test $$rc -eq 1 || test $$rc -eq 3; }

test: $(STAMP) $(LEROBOT_STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/pytest -q -m "not slow"

test-slow: $(STAMP)
	$(VENV)/bin/pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/env_step.py

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks scripts

clean:
	rm -rf $(VENV) $(LEROBOT_VENV) out .pytest_cache
