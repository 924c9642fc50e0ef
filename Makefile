# Every entry point of the platform. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | sha1sum | cut -c1-12)

.DEFAULT_GOAL := help
BENCH_SIZE ?= small

.PHONY: help install bench run demo test test-unit test-integration test-e2e lint format up down status clean chaos screenshots

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

bench: install ## Every benchmark against baselines, then bench/report.md (BENCH_SIZE=small|medium|full)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	@# Starts PostgreSQL and, unless a gateway answers on CRM_PORT_BASE, the distributed topology
	@# (deploy/up.sh); stops what it started. Ports: PG_PORT, KAFKA_PORT, KAFKA_CONTROLLER_PORT,
	@# CRM_PORT_BASE, CRM_VAR_DIR. Results in bench/out/*.json, charts in bench/out/charts.
	BENCH_SIZE=$(BENCH_SIZE) bench/run.sh

up: install ## Distributed mode on this machine: Kafka, PostgreSQL, each service its own process (logs in var/log)
	deploy/up.sh

down: ## Stop what `make up` started
	deploy/down.sh

status: ## What is running
	@deploy/kafka.sh status || true
	@deploy/postgres.sh status || true
	@deploy/up.sh status || true

CHAOS_SIZE ?= short
CHAOS_SEED ?= 1
chaos: install ## Crash test: purchases while services, Kafka and PostgreSQL crash; exactly-once checks (CHAOS_SIZE=short|full, CHAOS_SEED)
	$(BIN)/python -m bench.chaos --size $(CHAOS_SIZE) --seed $(CHAOS_SEED) --out var/chaos-$(CHAOS_SIZE).json

screenshots: install ## Screenshots of the staff console's main pages into docs/console/ (needs Debian's chromium)
	$(BIN)/python -m tests.e2e.console_screenshots

clean: down ## Remove var/ (databases, Kafka data, logs)
	rm -rf var
