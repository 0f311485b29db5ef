# Two commands for a fresh machine: `make demo` (install, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed only when no torch is importable: the CPU build. A torch you already have (CUDA or
# not, e.g. in the system site-packages the venv can see) is kept, never replaced.
TORCH ?= torch==2.13.0
TORCH_FLAGS ?=
DEMO_OUT ?= runs/demo

.PHONY: install demo test test-all lint bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q $(TORCH_FLAGS) "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	touch $@

demo: install
	rm -rf $(DEMO_OUT)
	$(BIN)/otzoo compare --solvers not,otm --pair 3-5 --preset quick --threads 1 --out $(DEMO_OUT)

test: install
	$(BIN)/python -m pytest -q -n auto

test-all: install
	$(BIN)/python -m pytest -q -m "slow or not slow"

lint: install
	$(BIN)/python -m ruff check .
	$(BIN)/python -m ruff format --check .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
