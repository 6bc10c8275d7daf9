# clusterclip — set-up, demo, tests and a data pipeline you can copy.
#
#   make demo   # set up .venv, build the demo corpus, embed -> cluster -> schedule, print a summary
#   make test   # set up .venv with the dev extra (+ the MosaicML reader env) and run the tests
#   make shell  # a shell with clusterclip on the PATH (or: source .venv/bin/activate)
#   make ablation        # proxies on the demo: random / uniform / clusterclip / --balance tokens, 3 seeds
#   make mixture-search  # proxies on Dirichlet mixtures of the demo -> fit -> propose -> check
#
# Pipeline on your own data (each step is always invoked; clusterclip compares the inputs, by
# content, and the settings with the step's manifest: what is unchanged is "already done"):
#   make schedule CORPUS='data/*.parquet' WORK=work K=2000 TOKENIZER=path/to/tokenizer.json \
#        FORMATS=bin,megatron SCHEDULE_FLAGS='--epochs 2'
# A step whose settings changed is refused, naming what differs; add OVERWRITE=--overwrite to
# replace it (the old output stays readable until the new one is complete).
# From any folder (your project's): make -f /path/to/clusterclip/Makefile schedule CORPUS=... ;
# paths you give are relative to that folder, the checkout's .venv is used (or CLUSTERCLIP=clusterclip).

SHELL := /bin/bash
# the checkout this Makefile is in (it may be run with -f from another folder)
ROOT := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
PYTHON ?= python3
# .venv of the checkout (relative when make runs in the checkout, as `make .venv/.dev-installed` expects)
VENV ?= $(if $(filter $(ROOT),$(CURDIR)),.venv,$(ROOT)/.venv)
BIN := $(VENV)/bin
# the clusterclip to run: the checkout's .venv (built on first use), or any other, e.g. CLUSTERCLIP=clusterclip
CLUSTERCLIP ?= $(BIN)/clusterclip
ifeq ($(CLUSTERCLIP),$(BIN)/clusterclip)
NEEDS_VENV := $(VENV)/.installed
endif
# CPU machines: the pinned CPU wheel (a looser torch pulls a multi-GB CUDA build).
TORCH_SPEC ?= torch==2.13.0

# ---- pipeline variables (override on the command line) ----
CORPUS ?=
WORK ?= work
EMB ?= $(WORK)/emb
CL ?= $(WORK)/cl
OUT ?= $(WORK)/schedule
REPORT ?= $(WORK)/report
K ?= 1000
TOKENIZER ?=
FORMATS ?= bin
EMBED_FLAGS ?=
CLUSTER_FLAGS ?=
SCHEDULE_FLAGS ?=
OVERWRITE ?=
# the demo's settings (configs/demo.toml holds the same as a config file)
DEMO_VARS := CORPUS=demo/corpus.jsonl.gz WORK=demo K=64 TOKENIZER=demo/tokenizer.json FORMATS=bin,megatron,parquet \
	EMBED_FLAGS="--max-length 128 --id-column id --dtype float32" \
	SCHEDULE_FLAGS="--epochs 2 --max-repeats 4 --shard-tokens 200000"
CORPUS_FILES := $(wildcard $(CORPUS))

# FORCE: always ask clusterclip, which knows the settings as well as the files
.PHONY: FORCE help install install-gpu shell demo test lint embed cluster schedule report mds-env bench clean clean-demo \
	ablation mixture-search

help:
	@sed -n '2,18p' $(ROOT)/Makefile

# ---- environments ----
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(ROOT)/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e "$(ROOT)"
	touch $@

$(VENV)/.dev-installed: $(ROOT)/pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e "$(ROOT)[dev]"
	touch $@

install: $(VENV)/.installed

# a shell with .venv's `clusterclip` on the PATH (or: source .venv/bin/activate)
shell: $(VENV)/.installed
	@echo "clusterclip is on the PATH in this shell; exit to leave it"
	@PATH="$(abspath $(BIN)):$$PATH" VIRTUAL_ENV="$(abspath $(VENV))" $(SHELL) -i

# CUDA machines: faiss-gpu instead of faiss-cpu (both provide the `faiss` module).
install-gpu: | $(BIN)/python
	$(BIN)/pip install --quiet torch -e "$(ROOT)[gpu]"
	$(BIN)/pip uninstall --quiet -y faiss-cpu
	$(BIN)/pip install --quiet --force-reinstall --no-deps faiss-gpu
	touch $(VENV)/.installed

# A separate environment for the real MosaicML Streaming reader (it cannot share ours).
mds-env:
	bash $(ROOT)/scripts/setup_mds_env.sh $(ROOT)/.venv-mds $(BIN)/python

# ---- the demo (in ./demo of the folder make runs in) ----
demo/corpus.jsonl.gz: $(ROOT)/scripts/build_demo_corpus.py | $(VENV)/.installed
	$(BIN)/python $(ROOT)/scripts/build_demo_corpus.py --out $@

demo/tokenizer.json: demo/corpus.jsonl.gz $(ROOT)/scripts/train_demo_tokenizer.py | $(VENV)/.installed
	$(BIN)/python $(ROOT)/scripts/train_demo_tokenizer.py demo/corpus.jsonl.gz --out $@

demo: $(VENV)/.installed demo/corpus.jsonl.gz demo/tokenizer.json
	@$(MAKE) -f $(ROOT)/Makefile --no-print-directory report $(DEMO_VARS)
	@echo
	@$(CLUSTERCLIP) inspect demo/schedule --sample 0 --decode
	@echo
	@echo "the report: file://$(abspath demo/report/index.html)"
	@echo "clusterclip itself: source $(VENV)/bin/activate (or: make -f $(ROOT)/Makefile shell)"

# ---- the pipeline, as file targets ----
$(EMB)/manifest.json: $(CORPUS_FILES) FORCE | $(NEEDS_VENV)
	@test -n "$(CORPUS)" || { echo "error: set CORPUS='data/*.parquet' (files, directories or globs)"; exit 2; }
	$(CLUSTERCLIP) embed $(CORPUS) --out $(EMB) $(EMBED_FLAGS) $(OVERWRITE)

$(CL)/manifest.json: $(EMB)/manifest.json FORCE
	$(CLUSTERCLIP) cluster $(EMB) --out $(CL) --k $(K) $(CLUSTER_FLAGS) $(OVERWRITE)

$(OUT)/manifest.json: $(CL)/manifest.json $(wildcard $(TOKENIZER)) FORCE
	@test -n "$(TOKENIZER)" || { echo "error: set TOKENIZER= (a tokenizer.json, a HF tokenizer dir or a hub name)"; exit 2; }
	$(CLUSTERCLIP) schedule $(EMB) $(CL) --out $(OUT) --tokenizer $(TOKENIZER) --format $(FORMATS) \
		--rehash-inputs $(SCHEDULE_FLAGS) $(OVERWRITE)

$(REPORT)/manifest.json: $(OUT)/manifest.json FORCE
	$(CLUSTERCLIP) report $(EMB) $(CL) $(OUT) --out $(REPORT) $(OVERWRITE)

# ---- what the order does to a model: proxies on the demo (README "What an order does to a model") ----
# make ablation: random / uniform / clusterclip / clusterclip --balance tokens, the same token budget, 3 seeds
# each, scored per cluster on held-out documents. make mixture-search: Dirichlet mixtures over 8 clusters ->
# proxies -> fit -> propose -> the proposal and the natural mixture trained and scored.
ABLATION ?= demo/ablation
ABLATION_TOKENS ?= 131072
SEARCH ?= demo/search
SEARCH_K ?= 8
SEARCH_N ?= 16
SEARCH_TOKENS ?= 65536
PROXY_FLAGS ?= --batch 8 --context 256
DEMO_SCHEDULE := --tokenizer demo/tokenizer.json --format bin --max-repeats 4

ablation: $(VENV)/.installed demo/corpus.jsonl.gz demo/tokenizer.json
	@$(MAKE) -f $(ROOT)/Makefile --no-print-directory cluster $(DEMO_VARS)
	$(CLUSTERCLIP) holdout demo/emb demo/cl --out $(ABLATION)/eval --per-cluster 4 $(OVERWRITE)
	@set -o pipefail; for s in random uniform clusterclip; do \
	  $(CLUSTERCLIP) schedule demo/emb demo/cl --out $(ABLATION)/$$s --sampler $$s --tokens $(ABLATION_TOKENS) \
	    --exclude $(ABLATION)/eval $(DEMO_SCHEDULE) --quiet $(OVERWRITE) | tail -1 || exit 1; done
	@set -o pipefail; $(CLUSTERCLIP) schedule demo/emb demo/cl --out $(ABLATION)/clusterclip-tokens --balance tokens \
	  --tokens $(ABLATION_TOKENS) --exclude $(ABLATION)/eval $(DEMO_SCHEDULE) --quiet $(OVERWRITE) | tail -1
	$(CLUSTERCLIP) proxy $(ABLATION)/random $(ABLATION)/uniform $(ABLATION)/clusterclip $(ABLATION)/clusterclip-tokens \
	  --eval $(ABLATION)/eval --out $(ABLATION)/runs --seeds 3 $(PROXY_FLAGS) $(OVERWRITE)

mixture-search: $(VENV)/.installed demo/corpus.jsonl.gz demo/tokenizer.json
	@$(MAKE) -f $(ROOT)/Makefile --no-print-directory embed $(DEMO_VARS)
	$(CLUSTERCLIP) cluster demo/emb --out $(SEARCH)/cl --k $(SEARCH_K) $(OVERWRITE)
	$(CLUSTERCLIP) holdout demo/emb $(SEARCH)/cl --out $(SEARCH)/eval --per-cluster 16 $(OVERWRITE)
	$(CLUSTERCLIP) mixtures demo/emb $(SEARCH)/cl --out $(SEARCH)/mix --dirichlet 1.0 --n $(SEARCH_N) --samples 100 \
	  --quiet $(OVERWRITE) > /dev/null
	@set -o pipefail; for i in $$(seq -f "%03g" 0 $$(($(SEARCH_N) - 1))); do \
	  $(CLUSTERCLIP) schedule demo/emb $(SEARCH)/cl --out $(SEARCH)/mixture-$$i --weights $(SEARCH)/mix/weights/mixture-$$i.csv \
	    --balance tokens --budget-tokens $(SEARCH_TOKENS) --exclude $(SEARCH)/eval $(DEMO_SCHEDULE) --quiet $(OVERWRITE) \
	    | tail -1 || exit 1; done
	$(CLUSTERCLIP) proxy $(SEARCH)/mixture-* --eval $(SEARCH)/eval --out $(SEARCH)/runs $(PROXY_FLAGS) $(OVERWRITE)
	$(CLUSTERCLIP) fit $(SEARCH)/runs --out $(SEARCH)/fit $(OVERWRITE)
	$(CLUSTERCLIP) propose $(SEARCH)/fit --out $(SEARCH)/weights.csv --budget-tokens $(SEARCH_TOKENS) --max-repeats 4 \
	  --max-kl 0.5 $(OVERWRITE)
	@set -o pipefail; $(CLUSTERCLIP) schedule demo/emb $(SEARCH)/cl --out $(SEARCH)/proposed --weights $(SEARCH)/weights.csv --balance tokens \
	  --budget-tokens $(SEARCH_TOKENS) --exclude $(SEARCH)/eval $(DEMO_SCHEDULE) --quiet $(OVERWRITE) | tail -1
	@set -o pipefail; $(CLUSTERCLIP) schedule demo/emb $(SEARCH)/cl --out $(SEARCH)/natural --sampler random --tokens $(SEARCH_TOKENS) \
	  --exclude $(SEARCH)/eval $(DEMO_SCHEDULE) --quiet $(OVERWRITE) | tail -1
	$(CLUSTERCLIP) proxy $(SEARCH)/natural $(SEARCH)/proposed --eval $(SEARCH)/eval --out $(SEARCH)/check --seeds 3 \
	  $(PROXY_FLAGS) $(OVERWRITE)

FORCE:

embed: $(EMB)/manifest.json
cluster: $(CL)/manifest.json
schedule: $(OUT)/manifest.json
report: $(REPORT)/manifest.json

# ---- tests and benchmarks (of the checkout, wherever make runs) ----
test: $(VENV)/.dev-installed
	@# a separate environment for the real MosaicML Streaming reader (it cannot share ours)
	cd $(ROOT) && { bash scripts/setup_mds_env.sh .venv-mds $(BIN)/python || echo "warning: MosaicML reader env not built; its test will skip"; }
	cd $(ROOT) && $(BIN)/python -m pytest -q

lint: $(VENV)/.dev-installed
	cd $(ROOT) && $(BIN)/ruff check clusterclip tests scripts
	cd $(ROOT) && $(BIN)/mypy

bench: $(VENV)/.dev-installed
	$(BIN)/pip install --quiet -e "$(ROOT)[bench]"
	cd $(ROOT) && $(BIN)/python scripts/bench_sampler.py
	cd $(ROOT) && $(BIN)/python scripts/bench_shards.py
	cd $(ROOT) && $(BIN)/python scripts/bench_cluster.py
	cd $(ROOT) && $(BIN)/python scripts/bench_embed.py

clean-demo:
	rm -rf demo

clean: clean-demo
	rm -rf $(VENV) $(ROOT)/.venv-mds $(ROOT)/.pytest_cache $(ROOT)/.hypothesis $(ROOT)/*.egg-info
