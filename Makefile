# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hub demo

# One pytest process per core, each taking whole files (module and package fixtures stay together).
test: $(STAMP)
	$(VENV)/bin/pytest -q -n auto --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check hub connectors consent tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	$(VENV)/bin/python bench/raw_floor.py

clean:
	rm -rf $(VENV) .hub
