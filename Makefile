# Switchboard: every developer and CI step. `make dev` runs the platform, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf
TSC := node_modules/.bin/tsc
PROTOS_DIR := .build/protos
IMAGE := .build/switchboard.binpb
PROTO_FILES := $(shell find proto -name '*.proto' | sort)

.PHONY: help deps gen gen-check protos image lint typecheck buf-lint buf-breaking ts-check \
        unit test pytest security dev migrate serve audit bench clean

help:
	@echo "make dev    - run the platform (server, Envoy, embedded PostgreSQL/Redis)"
	@echo "make test   - run every check (lint, types, contracts, generated code, tests, security)"
	@echo "make gen    - regenerate gen/ from proto/"
	@echo "make bench  - run the benchmarks and print side-by-side ratios"
	@echo "make audit  - dependency audit (needs a vulnerability database on the network)"

# --- dependencies -----------------------------------------------------------------------------
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

deps: $(VENV)/.installed node_modules/.installed

# --- contracts and generated code --------------------------------------------------------------
# google/api and google/rpc protos come from the installed googleapis-common-protos (no registry).
protos: $(VENV)/.installed
	@rm -rf $(PROTOS_DIR) && mkdir -p $(PROTOS_DIR)/google/api $(PROTOS_DIR)/google/rpc
	@site=$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))'); \
	  cp $$site/google/api/{annotations,http,httpbody}.proto $(PROTOS_DIR)/google/api/; \
	  cp $$site/google/rpc/{status,error_details,code}.proto $(PROTOS_DIR)/google/rpc/

gen: deps protos
	rm -rf gen/python gen/ts/switchboard gen/ts/google
	mkdir -p gen/python gen/ts
	PATH=$(CURDIR)/$(BIN):$$PATH $(PY) -m grpc_tools.protoc -I proto -I $(PROTOS_DIR) \
	  --python_out=gen/python --mypy_out=gen/python \
	  --grpc_python_out=gen/python --mypy_grpc_out=gen/python \
	  $(PROTO_FILES)
	find gen/python/switchboard -type d -exec touch {}/__init__.py \;
	touch gen/python/switchboard/py.typed
	$(BUF) generate
	$(MAKE) --no-print-directory image

# The descriptor image Envoy's transcoder loads (imports included).
image: deps protos
	@mkdir -p .build
	$(BUF) build -o $(IMAGE)

gen-check: gen
	@git add -N gen >/dev/null 2>&1 || true
	@if ! git diff --quiet -- gen; then \
	  echo "gen/ is stale: run 'make gen' and commit the result"; git diff --stat -- gen; exit 1; fi
	@echo "gen/ is fresh"

buf-lint: deps protos
	$(BUF) lint

buf-breaking: deps protos
	$(PY) -m server.devtools.breaking

ts-check: deps
	$(TSC) -p gen/ts/tsconfig.json --noEmit

# --- static checks ---------------------------------------------------------------------------
lint: deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: deps
	$(BIN)/mypy server client bots workers gateway tests bench

security: deps
	$(BIN)/bandit -q -c pyproject.toml -r server client bots workers gateway
	git ls-files -z | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline

# --- tests -----------------------------------------------------------------------------------
pytest: deps image
	$(BIN)/pytest -p no:cacheprovider

test: gen-check buf-lint buf-breaking ts-check lint typecheck security pytest

# --- run -------------------------------------------------------------------------------------
dev: gen
	$(BIN)/switchboard dev

migrate: deps
	$(BIN)/switchboard migrate

bench: deps image
	$(PY) -m bench.run

audit:
	$(BIN)/pip install --quiet -e '.[audit]'
	$(BIN)/pip-audit --strict

clean:
	rm -rf .build gen/python gen/ts
