"""Protecting what a service calls and who calls it: retry policies and backoff,
circuit breakers, rate limits, and shedding load by forecast."""

__all__: list[str] = []  # the public names are re-exported by framework/__init__
