# The two commands of the README:
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the tests (all of them, docstring examples included)
#   make test-fast  the edit-test loop: everything but the tests marked slow (under 2 minutes on 2 cores)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: 2.13.0 is a CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup setup-dev data demo test test-fast lint bench clean

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

# The recipes' data files (our own made-up texts), written into recipes/data/ by its generator.
DATA := recipes/data/.generated
$(DATA): recipes/data/generate.py recipes/data/catalogue.py recipes/data/seed_shapes.py $(VENV)/.core
	$(PY) recipes/data/generate.py
	touch $@

data: $(DATA)

# The main job: fine-tune the bundled all-MiniLM-L6-v2 on the generated catalogue data, print base vs
# fine-tuned retrieval metrics on held-out products, write the model + card to output/demo.
demo: $(VENV)/.core $(DATA)
	$(VENV)/bin/embtune train recipes/pairs_mnrl.yaml args.output_dir=output/demo args.overwrite_output_dir=true

test: $(VENV)/.dev
	$(PY) -m pytest -q

test-fast: $(VENV)/.dev
	$(PY) -m pytest -q -m "not slow"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench recipes

bench: $(VENV)/.dev
	$(PY) bench/encode.py

clean:
	rm -rf $(VENV) output .pytest_cache recipes/data/*.jsonl $(DATA)
