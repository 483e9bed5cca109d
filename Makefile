# The two commands a newcomer needs (see README.md):
#   make lab   — set up, then JupyterLab on notebooks/ with the default model ready
#   make test  — set up, then lint and the whole test suite
PYTHON ?= python3
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: setup lab test lint

setup:
	PYTHON=$(PYTHON) bash scripts/setup.sh

lab: setup
	$(PYTHON) -m jupyterlab --ServerApp.root_dir=notebooks $(ROOT_FLAG)

lint:
	$(PYTHON) -m ruff check trait_lab widgets tests bench
	$(PYTHON) -m ruff format --check trait_lab widgets tests bench
	$(PYTHON) -m mypy trait_lab

test: setup lint
	$(PYTHON) -m pytest tests
	$(PYTHON) -m pytest --doctest-modules trait_lab widgets
	$(PYTHON) -m pytest --nbmake --nbmake-timeout=600 notebooks
