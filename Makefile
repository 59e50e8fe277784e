# Two commands: `make run` publishes the seed briefs (dry run); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: run test lint bench system-deps clean

run: $(VENV)/.installed
	$(BIN)/briefcast publish seeds/* --out $(OUT)
	@echo "Open $(OUT)/<brief-id>/index.html to check every channel's preview."

test: $(VENV)/.installed-test system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/build.py

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# Headless Chromium (screenshot tests) and xmllint (Atom schema check), from Debian.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v xmllint >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium libxml2-utils fonts-dejavu-core >/dev/null; \
	  else \
	    echo "note: install chromium and libxml2-utils (sudo apt-get install chromium libxml2-utils) for the screenshot and schema tests"; \
	  fi; \
	fi

clean:
	rm -rf $(OUT) briefcast.db .pytest_cache
