# bastion — one command per task; `make help` lists them.
# The two that matter on a fresh machine: `make run` and `make test`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
HOST   ?= 127.0.0.1
PORT   ?= 8000
GATEWAY_PORT ?= 8001
SHOP_CONFIG := examples/shop/bastion.toml

.DEFAULT_GOAL := help
.PHONY: help install run dev test test-sqlite test-postgres lint fmt bench docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv (if missing) and install bastion with its dev tools

run: install ## Serve the shop on :8000 and its payment gateway on :8001 (HOST/PORT/GATEWAY_PORT override)
	HOST=$(HOST) PORT=$(PORT) GATEWAY_PORT=$(GATEWAY_PORT) BASTION_CONFIG=$(SHOP_CONFIG) \
		$(BIN)/python scripts/run_shop.py

dev: install ## Serve the shop with auto-reload
	BASTION_CONFIG=$(SHOP_CONFIG) $(BIN)/bastion dev examples.shop.app:app --host $(HOST) --port $(PORT)

test: install ## Run the whole suite: SQLite and, side by side, PostgreSQL for database tests (CI=true requires it)
	$(BIN)/python scripts/test.py

test-sqlite: install ## Run the suite on SQLite only
	$(BIN)/pytest

test-postgres: install ## Run the database tests on PostgreSQL only
	BASTION_TEST_DATABASE=postgres $(BIN)/pytest -m db

lint: install ## ruff, mypy --strict and the import-layer contract
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests examples benchmarks
	$(BIN)/mypy src
	$(BIN)/lint-imports

fmt: install ## Format and auto-fix
	$(BIN)/ruff format src tests examples benchmarks
	$(BIN)/ruff check --fix src tests examples benchmarks

bench: install ## Request-path benchmark (installs wrk; results in benchmarks/results/)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || echo "wrk not installed: the benchmark falls back to its Python load generator"
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/request_path.py --profile bastion

docs: ## Where the documentation lives
	@echo "docs/index.md is the entry point; the OpenAPI docs are served at /docs by 'make run'."

clean: ## Remove the virtualenv, caches and the local SQLite database
	rm -rf $(VENV) var .mypy_cache .ruff_cache
