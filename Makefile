# Two entry points: `make demo` and `make test`. Both create .venv and install requirements.txt
# on first use (torch is unpinned so pip picks the newest torch with a matching torchvision).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test

$(INSTALLED): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q tests

demo: $(INSTALLED)
	$(PY) demo.py
