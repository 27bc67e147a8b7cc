# The README's commands. Each creates .venv on first use and installs the project into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Tests run in 2 worker processes (this project's CI machine has 2 cores).
TEST_WORKERS ?= 2

.PHONY: run test lint format bench clean-venv

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Stamps record which extras are installed; editing pyproject.toml reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

$(VENV)/.installed-bench: pyproject.toml | $(VENV)/bin/activate
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@ $(VENV)/.installed-run

## make run: the main job on CPU (arrow-pointing extrapolation, cpu config)
run: $(VENV)/.installed-run
	$(PY) -m experiments.arrow_pointing.main \
		--config=experiments/arrow_pointing/configs/default.py:cpu \
		--workdir=runs/arrow_pointing

## make test: the whole test suite, notebooks included
test: $(VENV)/.installed-dev
	$(PY) -m pytest -n $(TEST_WORKERS) --durations=20 tests

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## make bench: every benchmark in experiments/benchmarks (JSON lines on stdout)
bench: $(VENV)/.installed-bench
	@for f in experiments/benchmarks/*.py; do \
		case $$f in */__init__.py) continue;; esac; \
		echo "# $$f" >&2; $(PY) -m experiments.benchmarks.$$(basename $$f .py) || exit 1; \
	done

clean-venv:
	rm -rf $(VENV)
