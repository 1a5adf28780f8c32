# The usual targets. `make demo` and `make test` set everything up themselves.
# PYTHON must be Python 3.11 or newer: the pins (numpy, pandas, transformers) refuse 3.10.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASSIGNMENTS := transformer foundations training

.PHONY: setup lint test demo build starter bench public mutants clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# make test spreads the tests over the cores (pytest-xdist); JOBS=0 runs them in one process.
JOBS ?= auto

lint: setup  ## ruff on the harness's code (its rules: pyproject.toml)
	$(PY) -m ruff check autograder tests benchmarks

test: setup lint  ## ruff, then the harness's own tests: reference, starter, zips, crashes, hangs, every catalogued mutant
	$(PY) -m pytest tests -n $(JOBS) --maxprocesses 4 --durations 10

demo: setup  ## build both zips, grade the reference, the starter and buggy submissions through the zip
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder demo $$a || exit 1; done

build: setup  ## dist/<name>-autograder.zip and dist/<name>-student.zip
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder build $$a || exit 1; done

starter: setup  ## regenerate starter/ from the reference's solution markers
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder starter $$a || exit 1; done

public: setup  ## run the public tests on the reference, as a student runs them
	@for a in $(ASSIGNMENTS); do $(PY) -m pytest -p autograder.kit.plugin -c /dev/null --rootdir . tests_public/$$a --submission reference/$$a -q || exit 1; done

mutants: setup  ## grade every catalogued buggy/correct variant; fail if one is graded unexpectedly
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder mutants $$a || exit 1; done

bench: setup  ## the cost of grading next to issue 12's targets (time, sandbox overhead, one CPU, memory, restarts)
	$(PY) benchmarks/bench.py

clean:
	rm -rf dist .pytest_cache
