# Everything a fresh machine needs: `make demo` runs the DogeRM demo on tiny models, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: install demo test bench-sweep bench-eval

$(VENV)/.installed: pyproject.toml evaluation/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[test]" -e "./evaluation[test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/dogerm-demo $(ARGS)

test: install
	$(BIN)/python -m pytest $(ARGS)

bench-sweep: install
	$(BIN)/python benchmarks/sweep.py $(ARGS)

bench-eval: install
	$(BIN)/python benchmarks/eval_throughput.py $(ARGS)
