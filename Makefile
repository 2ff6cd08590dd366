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
LOWEST_INTEGRATION := tests/integration/test_bus.py tests/integration/test_worker_flow.py \
	tests/integration/test_consumer_cancel.py

.PHONY: venv test lint demo bench chaos clean lock test-lowest fresh-clone broker4 broker4-stop

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

## test-lowest: the unit tests, and a worker and a bus on the real broker, at the lowest
## versions pyproject.toml allows for each direct dependency (a separate venv, .venv-lowest):
## fails when a lower bound is not true
test-lowest: $(UV)
	rm -rf $(LOWEST)
	$(UV) venv --quiet --python $(PYTHON) $(LOWEST)
	$(UV) pip install --quiet --python $(LOWEST)/bin/python --resolution lowest-direct \
		-e '.[dev,redis,postgres,testing,testcontainers]' 'pip>=24'  # for tests/unit/test_wheel.py
	$(LOWEST)/bin/pytest tests/unit $(LOWEST_INTEGRATION) -q -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	scripts/dead-code

## BROKERS: the RabbitMQ versions the integration and chaos suites run on (scripts/on-broker);
## one only: make test BROKERS=3.10 (3.10 is AMQP_URL's broker, 4.0 is make broker4's)
BROKERS ?= 3.10 4.0

## test: lint, type-check, the unit tests once, then integration and chaos on each of BROKERS
## (the RabbitMQ 4.0 node of scripts/broker4 is started first when 4.0 is among them)
test: lint
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)
	case " $(BROKERS) " in *" 4.0 "*) \
	    scripts/broker4 status >/dev/null 2>&1 || scripts/broker4 start;; esac
	for broker in $(BROKERS); do \
	    scripts/on-broker $$broker $(BIN)/pytest tests/integration tests/chaos $(PYTEST_ARGS) \
	        || exit 1; \
	done

## fresh-clone: `make demo` and `make test` (a subset) in a fresh clone of this repository's
## HEAD in a temporary directory, with AMQP_URL unset (RabbitMQ on localhost); see .ci/fresh-clone
fresh-clone:
	.ci/fresh-clone

## demo: the main job: start a worker and send it commands, end to end
demo: $(STAMP)
	$(BIN)/framework demo

## chaos: the fault-injection suite (short; CHAOS_LONG=1 make chaos for the long release run);
## regenerates docs/reliability.md (one section per broker of BROKERS) from the figures measured
chaos: lint
	for broker in $(BROKERS); do \
	    CHAOS_REPORT=docs/reliability.md \
	        scripts/on-broker $$broker $(BIN)/pytest tests/chaos $(PYTEST_ARGS) || exit 1; \
	done

$(BENCH_STAMP): $(STAMP)  # the lock already holds the bench extra
	touch $(BENCH_STAMP)

## bench: every contender and workload against AMQP_URL (S also Redis and PostgreSQL);
## writes bench/RESULTS.md
## (BENCH_ARGS=--quick for a smoke run)
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

## broker4: RabbitMQ 4.0 in a Debian trixie root (.broker4/) on 5682/15682, next to 3.10
broker4:
	scripts/broker4 start

broker4-stop:
	scripts/broker4 stop

clean:
	rm -rf $(VENV) $(LOWEST) .mypy_cache .ruff_cache .pytest_cache
