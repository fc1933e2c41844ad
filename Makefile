# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean lock

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

# The image's hashed lockfile (deploy/requirements.lock), from pyproject.toml and deploy/requirements.in.
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml deploy/requirements.in --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --custom-compile-command "make lock" -o deploy/requirements.lock

clean:
	rm -rf $(VENV) .hub
