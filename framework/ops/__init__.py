"""Operating workers and queues: dead letters, queue statistics, scaling, metrics,
probes, tracing, logs and the process runner."""

__all__: list[str] = []  # the public names are re-exported by framework/__init__
