# Two commands do all the set-up: `make demo` and `make test`.
# Installs are reproducible: the virtualenv is built from requirements-dev.lock (every
# package pinned, with its hashes); `make lock` refreshes the locks after pyproject.toml
# changes (see README, "Dependencies").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock
DEV_LOCK := requirements-dev.lock
# The tool that writes the locks, itself pinned; it lives in a virtualenv of its own so
# the project's holds exactly what the lock says.
UV_VERSION := 0.13.9
UV := .venv-tools/bin/uv

.PHONY: demo shell serve test lint check lock clean

# From the lock only: pip refuses any package whose hash is not in it, then installs the
# project itself with no index at all, so a dependency pyproject.toml asks for but the
# lock lacks stops the install (instead of being fetched unpinned).
$(STAMP): pyproject.toml $(DEV_LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install --quiet --no-index --no-build-isolation -e '.[dev]' \
	  || { echo "make: $(DEV_LOCK) does not satisfy pyproject.toml: run \`make lock\`" >&2; exit 1; }
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
	$(BIN)/mypy bot storage handlers app firebreak devtools emulator bench
	$(BIN)/python -m pytest -q

check: $(STAMP)  ## the doctor: settings, runbooks, and with ARGS=--live every connection
	$(BIN)/firebreak check $(ARGS)

$(UV):
	$(PYTHON) -m venv .venv-tools
	.venv-tools/bin/pip install --quiet uv==$(UV_VERSION)

# Newest versions pyproject.toml allows, for Python 3.11 on any platform. The image
# installs requirements.lock (what `serve` needs); the dev lock adds the dev tools on top
# of the same versions. After `make lock`, commit both files.
lock: $(UV)  ## refresh requirements.lock and requirements-dev.lock from pyproject.toml
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile pyproject.toml --universal \
	  --python-version 3.11 --generate-hashes --quiet -o $(LOCK)
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(UV) pip compile pyproject.toml --extra dev \
	  --universal --python-version 3.11 --generate-hashes --quiet -c $(LOCK) -o $(DEV_LOCK)

clean:
	rm -rf $(VENV) .venv-tools *.egg-info
