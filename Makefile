# The template's own tasks. `make` (or `make help`) lists them.
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(VENV)/bin
# Flags for the task's script, e.g. make tomorrow ARGS="--variant default"
ARGS ?=

.PHONY: help test tomorrow pins

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'

test: $(VENV)/.installed ## The template's test suite, as README.md runs it (pytest options go in ARGS)
	$(BIN)/pytest -n 2 $(ARGS)

tomorrow: $(VENV)/.installed ## Every variant with the newest allowed versions; names the package that breaks one (not CI: depends on the index)
	$(BIN)/python tools/tomorrow.py $(ARGS)

pins: $(VENV)/.installed ## Re-resolve tested-pins.txt (tools/pins.py; ARGS="--upgrade-package NAME"); then run the whole suite
	$(BIN)/python tools/pins.py $(ARGS)

# The README's environment: a venv with the test requirements (installed again when they change).
$(VENV)/.installed: requirements-dev.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	$(BIN)/pip install -r requirements-dev.txt
	touch $@
