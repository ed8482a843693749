# Every target makes .venv when it is missing, so each works on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# NO_MKDOCS_2_WARNING hides mkdocs-material's banner about its successor (--quiet would also hide the warnings
# that --strict counts, and let a broken docs build pass)
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

.PHONY: venv demo test lint bench docs package clean

# The dashboard's browser test drives Debian's Chromium (a test tool's own browser download cannot run here).
# A file target: installed once, only when missing; apt-get needs root, as CI runs `make test`. The first try
# skips `apt-get update` (slow) and works when the package lists are fresh; a clean machine's are not.
CHROMIUM := /usr/bin/chromium
APT := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

venv: $(STAMP)

$(CHROMIUM):
	@echo "installing Debian's chromium for the dashboard's browser test"
	@$(APT) > /dev/null 2>&1 || { apt-get update -qq && $(APT) > /dev/null; }

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(BIN)/reformer demo

test: venv $(CHROMIUM)
	$(BIN)/python -m pytest
	$(MKDOCS) build --strict
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(MAKE) package

lint: venv
	$(BIN)/ruff check src tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

bench: venv
	$(BIN)/reformer bench attention

# The docs site (mkdocs.yml, docs/) into site/; --strict turns every warning (a broken link, a missing API
# reference, a docstring griffe cannot parse) into a failure.
docs: venv
	$(MKDOCS) build --strict

# The wheel and sdist as a user gets them: built in isolation, their README checked to render, and the wheel
# installed into a fresh venv whose `reformer` must start.
PKG := build/package
package: venv
	rm -rf $(PKG)
	$(BIN)/python -m build --quiet --outdir $(PKG)/dist .
	$(BIN)/twine check --strict $(PKG)/dist/*
	$(PY) -m venv $(PKG)/venv
	$(PKG)/venv/bin/python -m pip install --quiet -c constraints.txt $(PKG)/dist/*.whl
	cd $(PKG) && venv/bin/reformer --version && venv/bin/reformer demo --help > /dev/null
	cd $(PKG) && venv/bin/python -c "from importlib.resources import files; \
		assert (files('reformer.trade') / 'static' / 'dashboard.js').is_file(), 'the dashboard page is not in the wheel'"
	@echo "package: wheel and sdist built, README renders, the installed wheel runs"

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
