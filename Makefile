# The two commands a newcomer needs (see README.md):
#   make lab   — set up, then JupyterLab on notebooks/ with the default model ready
#   make test  — set up, then lint and the whole test suite
# Maintainers: `make lock` refreshes requirements.lock; `make test-latest` / `make test-oldest`
# run the suite in a throw-away virtualenv on the newest / oldest releases the bounds allow.
PYTHON ?= python3
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test check lint docs lock test-latest test-oldest

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

lab: setup
	$(PYTHON) -m jupyterlab --ServerApp.root_dir=notebooks $(ROOT_FLAG)

lint:
	$(PYTHON) -m ruff check trait_lab widgets tests bench scripts
	$(PYTHON) -m ruff format --check trait_lab widgets tests bench scripts
	$(PYTHON) -m mypy trait_lab

# lint and every test, on whatever is installed (make test = setup + check)
check: lint
	$(PYTHON) -m pytest tests
	$(PYTHON) -m pytest --doctest-modules trait_lab widgets
	$(MAKE) docs PYTHON=$(PYTHON)

# the API reference site from the docstrings (mkdocs.yml), warnings as errors
docs:
	$(PYTHON) -m mkdocs build --strict --site-dir site

test: setup
	$(MAKE) check PYTHON=$(PYTHON)

lock:
	PYTHON=$(PYTHON) bash scripts/lock.sh

test-latest:
	PYTHON=$(PYTHON) bash scripts/test_env.sh latest

test-oldest:
	PYTHON=$(PYTHON) bash scripts/test_env.sh oldest
