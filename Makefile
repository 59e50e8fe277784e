# Two commands: `make run` publishes the seed briefs (dry run); `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: run test lint bench bench-send bench-deps bench-serve system-deps axe clean

run: $(VENV)/.installed
	$(BIN)/briefcast publish seeds/* --out $(OUT)
	@echo "Open $(OUT)/<brief-id>/index.html to check every channel's preview."

# The tests run on TEST_WORKERS processes (pytest-xdist), a module's tests on one of them
# (tests/conftest.py); then the few marked `serial`, alone: they time latencies of a second
# or two. TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 2
# The slowest tests, listed at the end of each run: where the suite's time goes.
TEST_DURATIONS ?= 40
test: $(VENV)/.installed-test system-deps axe
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -m "not serial" -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder \
	  --durations=$(TEST_DURATIONS)
	$(BIN)/pytest -m serial --durations=$(TEST_DURATIONS)

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

# briefcast serve against nginx on the same public folder, with wrk (loopback only; nginx runs
# in the foreground from a config in a temp folder: the system's nginx stays unconfigured).
# make bench-serve DURATION=10 SERVE_ROUNDS=3; PROFILE=--profile adds a py-spy profile of the 304s.
DURATION ?= 10
SERVE_CONNECTIONS ?= 64
SERVE_ROUNDS ?= 3
PROFILE ?=
bench-serve: $(VENV)/.installed
	@if ! command -v wrk >/dev/null || ! { command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; }; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      wrk nginx >/dev/null; \
	    systemctl disable --now nginx >/dev/null 2>&1 || service nginx stop >/dev/null 2>&1 || true; \
	  else \
	    echo "error: install wrk and nginx: sudo apt-get install wrk nginx"; \
	    exit 1; \
	  fi; \
	fi
	$(BIN)/python bench/serve.py --duration $(DURATION) --connections $(SERVE_CONNECTIONS) \
	  --rounds $(SERVE_ROUNDS) $(PROFILE)

# uv installs what pip would (the same versions: `pip freeze` compared on a clean clone) in
# 15 s instead of pip's 48 s, uv's own install included; pip is the fallback (no uv, or no
# PyPI: uv does not read pip's configuration, pip's local indexes among it).
# --compile-bytecode: as pip does, so that the first imports do not write them.
INSTALL = $(BIN)/pip install -q uv && $(BIN)/uv pip install -q --compile-bytecode \
	  --python $(BIN)/python -e $(1) || $(BIN)/pip install -q -e $(1)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call INSTALL,.)
	touch $@

$(VENV)/.installed-test: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(call INSTALL,'.[test]')
	touch $(VENV)/.installed $@

# Headless Chromium (screenshot tests), xmllint (Atom schema check) and PostgreSQL (the
# store's second dialect; the tests start a throwaway server of their own), from Debian.
# Debian puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin, not on PATH.
# SpamAssassin scores the email editions offline (tests/test_deliverability.py): its rules
# come with the package, so neither sa-update nor sa-compile (a Recommends) is needed; the
# test's own spamd (loopback) loads them once, not once a message (without it, spamassassin).
# Dovecot serves the bounce tests' IMAP mailbox (tests/test_bounces.py starts a throwaway
# instance of its own, on loopback ports; the system's dovecot service is not used).
# Debian's python3 is one the user `nobody` can run (tests/test_prefork.py: another user's
# request for a run is refused); the project's venv may sit in a folder nobody cannot read.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v xmllint >/dev/null \
	    || ! { command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } \
	    || ! command -v spamassassin >/dev/null \
	    || ! { command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ]; } \
	    || ! [ -x /usr/bin/python3 ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      chromium libxml2-utils fonts-dejavu-core postgresql spamassassin spamd spamc \
	      dovecot-imapd python3 \
	      >/dev/null; \
	  else \
	    echo "note: install chromium, libxml2-utils, postgresql, spamassassin (spamd, spamc), dovecot-imapd and python3 (sudo apt-get install chromium libxml2-utils postgresql spamassassin spamd spamc dovecot-imapd python3) for the screenshot, schema, PostgreSQL, spam-score, IMAP and prefork tests"; \
	  fi; \
	fi

# axe-core, Deque's accessibility engine, for tests/test_browser.py (which injects its
# axe.min.js into the pages Chromium shows it): from npm into .cache/axe, which git ignores.
# A pinned version, so that a new release's rules change nothing until it is chosen here.
AXE_VERSION ?= 4.14.1
AXE_STAMP := .cache/axe/.installed-$(AXE_VERSION)
axe: $(AXE_STAMP)

$(AXE_STAMP):
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; \
	  else \
	    echo "note: install npm (sudo apt-get install npm) for the accessibility tests (axe-core)"; \
	    exit 0; \
	  fi; \
	fi; \
	npm install --prefix .cache/axe --silent --no-audit --no-fund axe-core@$(AXE_VERSION) \
	  && touch $@

clean:
	rm -rf $(OUT) briefcast.db .pytest_cache
