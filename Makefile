# The usual targets. `make demo` and `make test` set everything up themselves.
# PYTHON must be Python 3.11 or newer: the pins (numpy, pandas, transformers) refuse 3.10.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ASSIGNMENTS := transformer foundations training

.PHONY: setup lint test demo build starter bench bench-regrade public mutants clean chromium

setup: $(VENV)/.installed chromium

# Debian's chromium: tests/test_regrade.py renders report.html in it (headless). Installed with
# apt-get when missing and we are root; otherwise that test fails and says how to install it.
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null \
	      || (apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null) \
	      || echo "could not install chromium: tests/test_regrade.py will fail"; \
	  else echo "no /usr/bin/chromium: install Debian's chromium (tests/test_regrade.py needs it)"; fi; \
	fi

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# make test spreads the tests over the cores (pytest-xdist; worksteal: an idle worker takes tests queued for a
# busy one, as test durations range from 0.01 s to a minute); JOBS=0 runs them in one process.
JOBS ?= auto

lint: setup  ## ruff on the harness's code (its rules: pyproject.toml)
	$(PY) -m ruff check autograder tests benchmarks

test: setup lint  ## ruff, then the harness's own tests: reference, starter, zips, crashes, hangs, every catalogued mutant
	$(PY) -m autograder precompile --caches $(ASSIGNMENTS)
	$(PY) -m pytest tests -n $(JOBS) --maxprocesses 4 --dist worksteal --durations 10

demo: setup  ## build both zips, grade the reference, the starter and buggy submissions through the zip; run the handout notebook
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder demo $$a || exit 1; done
	$(PY) -m autograder notebook-demo transformer
	$(PY) -m autograder regrade-demo transformer

build: setup  ## dist/<name>-autograder.zip and dist/<name>-student.zip
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder build $$a || exit 1; done

starter: setup  ## regenerate starter/ from the reference's solution markers
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder starter $$a || exit 1; done

public: setup  ## run the public tests on the reference, as a student runs them
	@for a in $(ASSIGNMENTS); do $(PY) -m pytest -p autograder.kit.plugin -c /dev/null --rootdir . --confcutdir . tests_public/$$a --submission reference/$$a -q \
	  --budgets "$$($(PY) -c 'import json, sys; from autograder import manifest; print(json.dumps(manifest.load(sys.argv[1]).budgets))' $$a)" || exit 1; done

mutants: setup  ## grade every catalogued buggy/correct variant; fail if one is graded unexpectedly
	@for a in $(ASSIGNMENTS); do $(PY) -m autograder mutants $$a || exit 1; done

bench: setup  ## the cost of grading next to issue 12's targets (time, sandbox overhead, one CPU, memory, restarts), then regrade's
	@$(PY) benchmarks/bench.py; a=$$?; $(PY) benchmarks/bench_regrade.py $(BENCH_ARGS); b=$$?; exit $$((a || b))

bench-regrade: setup  ## regrade's throughput, memory over a class, 1 vs 2 workers (issue 14)
	$(PY) benchmarks/bench_regrade.py $(BENCH_ARGS)

clean:
	rm -rf dist .pytest_cache
