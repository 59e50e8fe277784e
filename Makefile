# Two commands: `make run` publishes the seed briefs (dry run); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: run test lint bench bench-send bench-deps system-deps clean

run: $(VENV)/.installed
	$(BIN)/briefcast publish seeds/* --out $(OUT)
	@echo "Open $(OUT)/<brief-id>/index.html to check every channel's preview."

test: $(VENV)/.installed-test system-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: $(VENV)/.installed-test
	$(BIN)/python bench/build.py

# Live delivery against Postfix's smtp-sink, with smtp-source as the reference (loopback only).
# make bench-send SUBSCRIBERS=100000 ROUNDS=1 for the memory check.
SUBSCRIBERS ?= 10000
CONNECTIONS ?= 4
ROUNDS ?= 5
bench-send: $(VENV)/.installed bench-deps
	$(BIN)/python bench/send.py --subscribers $(SUBSCRIBERS) --connections $(CONNECTIONS) \
	  --rounds $(ROUNDS)

# smtp-sink and smtp-source come with Debian's postfix; "No configuration" keeps the Postfix
# daemon itself unconfigured and stopped (nothing listens on port 25).
bench-deps:
	@if ! command -v smtp-sink >/dev/null && [ ! -x /usr/sbin/smtp-sink ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      postfix >/dev/null; \
	  else \
	    echo "error: install Postfix's smtp-sink/smtp-source: sudo apt-get install postfix"; \
	    exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $(VENV)/.installed $@

# Headless Chromium (screenshot tests), xmllint (Atom schema check) and PostgreSQL (the
# store's second dialect; the tests start a throwaway server of their own), from Debian.
# Debian puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, not on PATH.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v xmllint >/dev/null \
	    || ! { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium libxml2-utils fonts-dejavu-core postgresql >/dev/null; \
	  else \
	    echo "note: install chromium, libxml2-utils and postgresql (sudo apt-get install chromium libxml2-utils postgresql) for the screenshot, schema and PostgreSQL tests"; \
	  fi; \
	fi

clean:
	rm -rf $(OUT) briefcast.db .pytest_cache
