# Every entry point of the platform. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.DEFAULT_GOAL := help
BENCH_SIZE ?= small

.PHONY: help install bench run demo test test-unit test-integration test-e2e lint format up down status clean

help: ## Show the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## Create .venv and install the platform with its dev tools

run: install ## Embedded mode: the whole platform on http://localhost:8000 (docs at /docs)
	$(BIN)/crm run

demo: install ## Embedded mode with the demo data set loaded (progress bar)
	$(BIN)/crm run --demo

test: install lint ## Lint, start Kafka and PostgreSQL (if not running), run every test, stop what was started
	deploy/test.sh

test-unit: install ## Unit tests only (no servers needed)
	$(BIN)/pytest -m unit

test-integration: install ## Integration tests (starts Kafka and PostgreSQL as needed)
	deploy/test.sh -m integration

test-e2e: install ## End-to-end tests, embedded and distributed
	deploy/test.sh -m e2e

lint: install ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared services

format: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install ## Benchmarks with figures against baselines (BENCH_SIZE=small|medium|full); report in bench/out
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	deploy/postgres.sh start
	$(BIN)/python -m bench.identity --size $(BENCH_SIZE) --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres
	$(BIN)/python -m bench.interactions.timeline --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres \
		$(if $(filter small,$(BENCH_SIZE)),--events 20000 --others 20000 --requests 300,)
	$(BIN)/python -m bench.segmentation.features --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres \
		$(if $(filter small,$(BENCH_SIZE)),--customers 10000 --purchases 100000 --events 300,) \
		$(if $(filter full,$(BENCH_SIZE)),--customers 1000000 --purchases 20000000,)
	$(BIN)/python -m bench.segmentation.batch_rule --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres \
		$(if $(filter small,$(BENCH_SIZE)),--customers 10000 --purchases 100000,) \
		$(if $(filter full,$(BENCH_SIZE)),--customers 1000000 --purchases 20000000,)
	$(BIN)/python -m bench.loyalty.ledger --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres \
		$(if $(filter small,$(BENCH_SIZE)),--members 2000 --seconds 5 --hot 500 --redemptions 100,)
	$(BIN)/python -m bench.loyalty.redemption --out bench/out \
		--postgres postgresql+asyncpg://crm:crm@127.0.0.1:$${PG_PORT:-55432}/postgres \
		$(if $(filter small,$(BENCH_SIZE)),--redemptions 100,)
	@# Bulk ingestion through the gateway needs the distributed topology: started here (and stopped
	@# after) unless `make up` already runs it.
	@if curl -fsS http://127.0.0.1:8000/ready >/dev/null 2>&1; then was_up=1; else was_up=0; deploy/up.sh; fi; \
	$(BIN)/python -m bench.interactions.ingest --out bench/out $(if $(filter small,$(BENCH_SIZE)),--items 20000,); \
	rc=$$?; if [ $$was_up = 0 ]; then deploy/down.sh; fi; exit $$rc

up: install ## Distributed mode on this machine: Kafka, PostgreSQL, each service its own process (logs in var/log)
	deploy/up.sh

down: ## Stop what `make up` started
	deploy/down.sh

status: ## What is running
	@deploy/kafka.sh status || true
	@deploy/postgres.sh status || true
	@deploy/up.sh status || true

clean: down ## Remove var/ (databases, Kafka data, logs)
	rm -rf var
