"""Benchmarks: the framework against raw aio-pika, a tuned raw aiormq reference and FastStream.

`make bench` (or `python -m bench`) runs every contender through every workload against
AMQP_URL and writes bench/RESULTS.md; `python -m bench --quick` is the CI smoke version.
"""
