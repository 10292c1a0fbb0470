# Everything a fresh machine needs: `make demo` runs the DogeRM demo on tiny models, `make test` runs the tests.
# `make test-lowest` runs the smoke set (tests/smoke/) on the lowest versions both pyprojects allow.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
LOWEST ?= build/venv-lowest

.PHONY: install demo test test-codepaths test-lowest bench-sweep bench-eval

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

# The demo's determinism tests with the test process itself on other code paths (ATen's AVX2 kernels, MKL's AVX2
# branch, one OpenMP thread): a world's trainings pin their own path, so its digest and the README's lines hold.
test-codepaths: install
	ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=AVX2 OMP_NUM_THREADS=1 $(BIN)/python -m pytest -p no:cacheprovider \
		evaluation/tests/test_demo_readme.py "evaluation/tests/test_demo_world.py::test_world_layout_and_metadata" \
		"evaluation/tests/test_demo_world.py::test_side_by_side_training_gives_the_sequential_weights" $(ARGS)

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
