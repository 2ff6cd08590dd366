# One task runner: README and .ci/run both call these targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp

.PHONY: venv test lint demo bench chaos clean broker4 broker4-stop

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,redis,postgres]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

## BROKERS: the RabbitMQ versions the integration and chaos suites run on (scripts/on-broker);
## one only: make test BROKERS=3.10 (3.10 is AMQP_URL's broker, 4.0 is make broker4's)
BROKERS ?= 3.10 4.0

## test: lint, type-check, the unit tests once, then integration and chaos on each of BROKERS
test: lint
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)
	for broker in $(BROKERS); do \
	    scripts/on-broker $$broker $(BIN)/pytest tests/integration tests/chaos $(PYTEST_ARGS) \
	        || exit 1; \
	done

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

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,redis,postgres]'
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
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
