# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo shell serve test lint check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)  ## play a scripted incident against the built-in Slack emulator
	$(BIN)/firebreak demo

shell: $(STAMP)  ## interactive Slack-like terminal, no workspace needed
	$(BIN)/firebreak shell

serve: $(STAMP)  ## run the bot against real Slack (needs SLACK_* settings)
	$(BIN)/firebreak serve

test: $(STAMP)  ## the whole test suite (SQLite and Postgres)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy bot storage handlers app firebreak devtools
	$(BIN)/python -m pytest -q

check: $(STAMP)
	$(BIN)/firebreak check

clean:
	rm -rf $(VENV) *.egg-info
