# One task runner: README and .ci/run both call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
# Every dependency of every extra, pinned with hashes: the versions CI tested (`make lock`)
LOCK := requirements.lock
UV_VERSION := 0.13.9
UV := $(BIN)/uv
LOWEST := .venv-lowest

.PHONY: venv test lint demo bench chaos clean lock test-lowest fresh-clone

# The venv installs exactly the lock, then the checkout itself (editable, no dependencies);
# `pip check` fails if pyproject.toml asks for something the lock lacks (run `make lock`).
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check || { echo "$(LOCK) does not match pyproject.toml: run make lock"; exit 1; }
	touch $(STAMP)

venv: $(STAMP)

$(UV):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

## lock: re-resolve every dependency (all extras, Python 3.11+, any platform) into
## requirements.lock with hashes; commit the result. Run after changing dependencies.
lock: $(UV)
	$(UV) pip compile pyproject.toml --all-extras --universal --python-version 3.11 \
		--generate-hashes --quiet --custom-compile-command 'make lock' --output-file $(LOCK)

## test-lowest: the unit tests at the lowest versions pyproject.toml allows for each direct
## dependency (a separate venv, .venv-lowest): fails when a lower bound is not true
test-lowest: $(UV)
	rm -rf $(LOWEST)
	$(UV) venv --quiet --python $(PYTHON) $(LOWEST)
	$(UV) pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct \
		-e '.[dev,redis,postgres,testing,testcontainers]' 'pip>=24'  # for tests/unit/test_wheel.py
	$(LOWEST)/bin/pytest tests/unit -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## test: lint, type-check, then every test (unit, integration, chaos) against AMQP_URL
test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

## fresh-clone: `make demo` and `make test` (a subset) in a fresh clone of this repository's
## HEAD in a temporary directory, with AMQP_URL unset (RabbitMQ on localhost); see .ci/fresh-clone
fresh-clone:
	.ci/fresh-clone

## demo: the main job: start a worker and send it commands, end to end
demo: $(STAMP)
	$(BIN)/framework demo

## chaos: the fault-injection suite (short; CHAOS_LONG=1 make chaos for the long release run);
## regenerates docs/reliability.md from the figures the scenarios measure
chaos: lint
	CHAOS_REPORT=docs/reliability.md $(BIN)/pytest tests/chaos $(PYTEST_ARGS)

$(BENCH_STAMP): $(STAMP)  # the lock already holds the bench extra
	touch $(BENCH_STAMP)

## bench: every contender and workload against AMQP_URL (S also Redis and PostgreSQL);
## writes bench/RESULTS.md
## (BENCH_ARGS=--quick for a smoke run)
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
