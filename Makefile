# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export GLOG_v := 3
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test test-fast lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nas search -c experiments/demo.yaml
	$(VENV)/bin/nas export runs/demo --best --pareto
	$(VENV)/bin/nas plot runs/demo
	$(VENV)/bin/nas results runs/demo | tail -n 12
	@echo "demo results: runs/demo (trials.csv, exports/, pareto.png, pareto.html, reward.png)"

# ruff and mypy (strict over nas/spec, search_spaces, controllers) run before the tests: a slip fails fast.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# The slowest tests are listed at the end (CI's limit is 90 minutes: watch what grows).
test: lint
	$(PY) -m pytest -q --durations=30

test-fast: lint
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build *.egg-info
