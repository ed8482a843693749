# Every target makes .venv when it is missing, so each works on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# NO_MKDOCS_2_WARNING hides mkdocs-material's banner about its successor (--quiet would also hide the warnings
# that --strict counts, and let a broken docs build pass)
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: venv demo test lint bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/reformer demo

test: venv
	$(BIN)/python -m pytest
	$(MKDOCS) build --strict
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy

lint: venv
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

bench: venv
	$(BIN)/reformer bench attention

# The docs site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a missing API
# reference, a docstring griffe cannot parse) into a failure.
docs: venv
	$(MKDOCS) build --strict

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
