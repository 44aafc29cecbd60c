# bench: host set-up, demo and tests. Run `make` for the list of targets.
PYTHON      ?= python3
VENV        ?= .venv
PYTEST_ARGS ?=

STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help setup host venv demo workloads test lint clean
# Nothing here gains from -j, and `host` must finish before the venv is made
# (it may install python3-venv): keep every run serial.
.NOTPARALLEL:

help:
	@echo 'Targets:'
	@echo '  setup   install/start the host engines (scripts/setup-host.sh, may use apt as root),'
	@echo '          then create $(VENV) and pip install -e ".[dev]" (again only when pyproject.toml changes)'
	@echo '  demo    setup, then build the images, run scenarios/quickstart.yaml and report it'
	@echo '  workloads  setup plus stress-ng, fio, iperf3, sockperf, wrk (apt), then build the'
	@echo '          workloads image (`bench images build workloads`) for scenarios/workloads.yaml'
	@echo '  test    setup, then run the tests: $(VENV)/bin/python -m pytest -q tests $$PYTEST_ARGS'
	@echo '  lint    ruff check, ruff format --check (bench, tests, benchmarks), then mypy'
	@echo '          (settings: pyproject.toml [tool.mypy]); needs only the venv'
	@echo '  clean   bench clean (removes what bench created), if the venv exists'
	@echo 'Variables: PYTHON=$(PYTHON) VENV=$(VENV) PYTEST_ARGS=$(PYTEST_ARGS)'

setup: host venv

host:
	PYTHON='$(PYTHON)' scripts/setup-host.sh

venv: $(STAMP)

# The stamp is newer than pyproject.toml once the editable install succeeded.
$(STAMP): pyproject.toml
	@test -x '$(VENV)/bin/python' || { echo '$(PYTHON) -m venv $(VENV)'; '$(PYTHON)' -m venv '$(VENV)'; }
	'$(VENV)/bin/pip' install -e '.[dev]'
	@touch '$@'

# The run's summary, then the report of that run (its last output line is the run
# directory) and the measured containers-vs-VMs table.
demo: setup
	'$(VENV)/bin/bench' images build
	@log=$$(mktemp) && trap 'rm -f "$$log"' EXIT; \
	'$(VENV)/bin/bench' run scenarios/quickstart.yaml >"$$log"; rc=$$?; cat "$$log"; \
	[ $$rc -eq 0 ] || exit $$rc; \
	run=$$(tail -n 1 "$$log"); \
	'$(VENV)/bin/bench' report "$$run" && \
	cat "reports/$$(basename "$$run")/containers-vs-vms.md"

# The workloads image: its tools come from apt (setup-host.sh installs them when
# BENCH_WORKLOADS=1), then bench packs them with their libraries. Not part of demo.
workloads:
	BENCH_WORKLOADS=1 PYTHON='$(PYTHON)' scripts/setup-host.sh
	@$(MAKE) --no-print-directory venv
	'$(VENV)/bin/bench' images build workloads

test: setup
	'$(VENV)/bin/python' -m pytest -q tests $(PYTEST_ARGS)

# mypy checks the files pyproject.toml's [tool.mypy] names.
lint: venv
	'$(VENV)/bin/ruff' check bench tests benchmarks
	'$(VENV)/bin/ruff' format --check bench tests benchmarks
	'$(VENV)/bin/mypy'

clean:
	@if [ -x '$(VENV)/bin/bench' ]; then \
		echo '$(VENV)/bin/bench clean'; '$(VENV)/bin/bench' clean; \
	else \
		echo 'no $(VENV)/bin/bench: nothing to clean'; \
	fi
