# Sotto: two commands for a newcomer (see README.md).
#   make demo   set up and run the demo on the embedded default
#   make test   set up and run every check and test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NODE_DIR := tests/interop/node

.PHONY: demo test test-under-load setup node tmux lint typecheck layering pytest pytest-compiled bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

$(NODE_DIR)/node_modules/.installed: $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(VENV)/.installed

node: $(NODE_DIR)/node_modules/.installed

# The terminal app's end-to-end test drives `sotto chat` in tmux: where tmux is missing, Debian's
# package is installed when this runs as root (otherwise the test says it was skipped, and why).
tmux:
	@command -v tmux >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get install -y -qq tmux >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq tmux >/dev/null; }; \
	  else echo "tmux is not installed: the terminal app's tmux test will be skipped"; fi; }

demo: setup
	$(PY) -m sotto.demo

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: setup
	$(VENV)/bin/mypy

layering: setup
	$(PY) -m pytest -q -p no:cacheprovider tests/test_layering.py

# Two workers, one test file each at a time (a file's fixtures stay in one process).
JOBS ?= 2
pytest: setup node tmux
	$(PY) -m pytest -n $(JOBS) --dist loadfile

# The protocol, crypto and interop tests again, on the mypyc-compiled core (bench/compiled.py).
pytest-compiled: setup node
	@src=$$($(PY) bench/compiled.py); status=$$?; \
	if [ $$status -eq 2 ]; then echo "pytest-compiled: no C compiler, so no compiled build to test"; exit 0; fi; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	echo "pytest-compiled: protocol, crypto and interop tests on $$src"; \
	PYTHONPATH=$$src SOTTO_EXPECT_COMPILED=1 $(PY) -m pytest -n $(JOBS) --dist loadfile -p no:cacheprovider tests/protocol tests/crypto tests/interop

# Every decoder of outside bytes under atheris (tests/fuzz): 10^6 inputs per target, one target at
# a time; fuzz-smoke is a bounded run of all targets in one process, at most 20 s of fuzzing.
.PHONY: fuzz fuzz-smoke
fuzz: setup
	$(PY) -m tests.fuzz.run --runs 1000000

fuzz-smoke: setup
	$(PY) -m tests.fuzz.run --together --runs 300000 --seconds 20 --seed 1 --skip-without-atheris

test: lint typecheck layering pytest pytest-compiled fuzz-smoke

# make test RUNS times in a row while a busy loop holds one core at 100%: every run must pass.
RUNS ?= 10
test-under-load: setup node
	$(PY) tests/under_load.py --runs $(RUNS)

bench: setup node
	$(PY) bench/protocol.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis build
