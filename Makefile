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
        unit test pytest security dev migrate serve audit bench bench-fanout bench-dispatch bench-booking \
        clean system-deps

help:
	@echo "make dev    - run the platform (server, Envoy, embedded PostgreSQL/Redis)"
	@echo "make test   - run every check (lint, types, contracts, generated code, tests, security)"
	@echo "make gen    - regenerate gen/ from proto/"
	@echo "make bench  - run the benchmarks and print side-by-side ratios"
	@echo "make bench-fanout - room fan-out (200 subscribers, 2 replicas) vs bare Redis pub/sub"
	@echo "make bench-dispatch - notification dispatch vs the configured rate (fake Bot API)"
	@echo "make bench-booking - GetAvailability at concurrency 32 (2 masters x 60 days) + 100-way slot contention"
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

# System packages no wheel ships (coturn for the WebRTC call tests); a no-op once installed.
system-deps:
	@bash deploy/scripts/install-system-deps.sh

deps: $(VENV)/.installed node_modules/.installed system-deps

# --- contracts and generated code --------------------------------------------------------------
# google/api and google/rpc protos come from the installed googleapis-common-protos (no registry).
protos: $(VENV)/.installed
	@rm -rf $(PROTOS_DIR) && mkdir -p $(PROTOS_DIR)/google/api $(PROTOS_DIR)/google/rpc
	@site=$$($(PY) -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))'); \
	  cp $$site/google/api/{annotations,http,httpbody}.proto $(PROTOS_DIR)/google/api/; \
	  cp $$site/google/rpc/{status,error_details,code}.proto $(PROTOS_DIR)/google/rpc/

gen: deps protos
	@# Everything generated goes; the hand-written gen/ts/tsconfig.json (for `make ts-check`) stays.
	rm -rf gen/python
	mkdir -p gen/python gen/ts
	find gen/ts -mindepth 1 -maxdepth 1 ! -name tsconfig.json -exec rm -rf {} +
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

# gen/ must be exactly what generation produces: generate twice (the two runs must agree, so
# generation is deterministic), then fail on any modified, deleted or new untracked file in gen/.
gen-check: gen
	@$(PY) -m server.devtools.gencheck snapshot
	@$(MAKE) --no-print-directory gen >.build/gen-check.log 2>&1 || { cat .build/gen-check.log; exit 1; }
	@$(PY) -m server.devtools.gencheck verify

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
	$(BIN)/mypy server client bots workers gateway deploy tests bench

# bandit on the hand-written packages ([tool.bandit] in pyproject.toml) at medium severity and
# confidence and up: the low ones (subprocess calls, password-like names) are ruff's S rules, which
# `make lint` enforces with justified `noqa`s that bandit cannot read (it needs `# nosec BXXX`).
# Then detect-secrets on every file git tracks or would add: a finding not in .secrets.baseline
# fails. After reviewing a false positive: `.venv/bin/python -m server.devtools.secrets update`.
security: deps
	$(BIN)/bandit -q -c pyproject.toml --severity-level medium --confidence-level medium \
	  -r server client bots workers gateway
	$(PY) -m server.devtools.secrets check

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

# Room fan-out over two replicas vs a bare Redis pub/sub floor (FANOUT_SECONDS=5 for a quick run).
bench-fanout: deps
	$(PY) -m bench.fanout

# Notification dispatch to the fake Bot API with the limits on (share of the rate, violations).
bench-dispatch: deps
	$(PY) -m bench.dispatch

# Booking: GetAvailability (1 and 7 days) vs GetMe at concurrency 32, and 100 clients racing for one slot.
bench-booking: deps
	$(PY) -m bench.booking

audit:
	$(BIN)/pip install --quiet -e '.[audit]'
	$(BIN)/pip-audit --strict

clean:
	rm -rf .build gen/python
	find gen/ts -mindepth 1 -maxdepth 1 ! -name tsconfig.json -exec rm -rf {} +
