# Two commands: `make demo` and `make test`. Both set up what they need first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint ui venv clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq -r requirements.lock
	$(BIN)/python -m pip install -qq --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/mlplatform demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

ui: $(STAMP)
	$(BIN)/mlplatform ui

# Regenerate the lock after editing requirements.in (needs `pip install uv`).
lock:
	uv pip compile requirements.in --python-version 3.11 --find-links /opt/wheels --emit-find-links -o requirements.lock

clean:
	rm -rf $(VENV) .mlplatform .pytest_cache .ruff_cache .mypy_cache
