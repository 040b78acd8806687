# One command sets up and runs each job on a fresh machine:
#   make test        system packages + .venv + lint + type check + tests
#   make quickstart  system packages + .venv + the offline end-to-end demo
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint typecheck pytest quickstart clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py scripts/install_system_packages.sh
	bash scripts/install_system_packages.sh
	# The venv holds ~8 GiB: fairseq2 pins torch 2.9.1, whose PyPI build is CUDA's.
	$(PYTHON) scripts/require_free_disk.py 9 $(VENV) "Installing the venv" --counting $(VENV)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# One resolver run, so nothing upgrades fairseq2's pins afterwards.
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

# QUICKSTART_ARGS: e.g. `--small`, or an output directory (default quickstart_out/).
quickstart: $(STAMP)
	$(PY) -m speechmapper_plugin.quickstart $(QUICKSTART_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache

# All CPU benchmarks (under 15 minutes); each writes its JSON to benchmarks/results/
# (see BENCHMARKS.md). BENCH_ARGS is passed to every script, e.g. `--repeats 5`.
.PHONY: bench
bench: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_stage1_step $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_data_path $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_stage1_memory $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_feature_store $(BENCH_ARGS)
	$(PY) -m benchmarks.bench_sm4t_encoder --repeats 3 --seconds 8 7 6 5 $(BENCH_ARGS)
	OMP_NUM_THREADS=1 $(PY) -m benchmarks.bench_generation $(BENCH_ARGS)

# GPU figures at the paper's shapes (stage-1 MFU, encoder RTF, stage-2 step with
# 1B and 8B random LLMs, generation); needs CUDA (without it: tiny shapes on the
# CPU). Writes benchmarks/results/gpu_<card>.json; see BENCHMARKS.md.
.PHONY: bench-gpu
bench-gpu: $(STAMP)
	$(PY) -m benchmarks.bench_gpu $(BENCH_ARGS)

# The dress rehearsal (issue 19): the paper's configs at the paper's shapes on
# random weights (SeamlessM4T-v2 large, a Llama-3.2-1B-shaped LLM), step by
# step into build/rehearsal/ (a finished step is skipped; REHEARSAL_ARGS, e.g.
# `--steps stage1,stage2 --force`). Not part of `make test`; see BENCHMARKS.md.
.PHONY: rehearsal
rehearsal: $(STAMP)
	$(PYTHON) scripts/require_free_disk.py 20 build/rehearsal "The dress rehearsal (full-size checkpoints)" --counting build/rehearsal
	OMP_NUM_THREADS=2 $(PY) -m benchmarks.rehearsal $(REHEARSAL_ARGS)
