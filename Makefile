# Balise — the two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: deps demo test lint typecheck imports pytest clean

deps:
	@scripts/ensure-deps

demo: deps
	$(BIN)/balise demo

lint: deps
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: deps
	$(BIN)/mypy

imports: deps
	$(BIN)/lint-imports

pytest: deps
	$(BIN)/pytest -q -p no:cacheprovider

test: deps lint typecheck imports pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
