# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean lock base-image-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hub demo

# One pytest process per core and one more (much of a test's time is spent waiting on the hub's processes),
# each taking whole files (module and package fixtures stay together).
TEST_WORKERS ?= $(shell echo $$(( $$(nproc) + 1 )))
test: $(STAMP)
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

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

# The Dockerfile's pinned base image digest against Docker Hub: fails if it is no longer published, warns if
# its tag now names a rebuilt image (docs/operations.md, "Refresh the base image"); skipped offline.
base-image-check: $(STAMP)
	$(VENV)/bin/pytest -q -rsw tests/deploy/test_base_image_digest.py

clean:
	rm -rf $(VENV) .hub
