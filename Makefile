# Everything a fresh machine needs: `make demo` runs the DogeRM demo on tiny models, `make test` runs the tests.
# `make test-lowest` runs the smoke set (tests/smoke/) on the lowest versions both pyprojects allow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
LOWEST ?= build/venv-lowest

.PHONY: install demo test test-lowest bench-sweep bench-eval

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

# A fresh virtualenv: torch first, then every direct requirement at its floor (constraints read from the pyprojects,
# build backend included), a check that pip installed exactly those, then the smoke set (-n 2: pytest-xdist's floor).
test-lowest:
	rm -rf $(LOWEST)
	$(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install -q --upgrade pip
	$(LOWEST)/bin/python -m pip install -q $(TORCH) packaging
	$(LOWEST)/bin/python -m tests.smoke.constraints > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install -q -c $(LOWEST)/constraints.txt --build-constraint $(LOWEST)/constraints.txt \
		-e ".[train,test]" -e "./evaluation[test]"
	$(LOWEST)/bin/python -m tests.smoke.constraints --check
	$(LOWEST)/bin/python -m pytest -p no:cacheprovider -n 2 tests/smoke $(ARGS)

bench-sweep: install
	$(BIN)/python benchmarks/sweep.py $(ARGS)

bench-eval: install
	$(BIN)/python benchmarks/eval_throughput.py $(ARGS)
