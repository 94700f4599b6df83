# Entry points: `make demo`, `make test` and `make lint`. Each creates .venv and installs
# requirements.txt on first use (torch is unpinned so pip picks the newest torch with a matching
# torchvision).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# pytest's worker processes for `make test`, one a core (each runs one thread, tests/conftest.py);
# TEST_JOBS=0 runs the tests in this process, one after another
TEST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: demo test lint

$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q -n $(TEST_JOBS) tests

# ruff's linter and formatter, configured in pyproject.toml (lines of 120 characters), and
# vermin, which refuses syntax and library calls newer than the Python 3.9 the README promises
lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/vermin --quiet --no-tips --violations --eval-annotations -t=3.9- --exclude-regex '(^|/)\.venv/' .

demo: $(INSTALLED)
	$(PY) demo.py
