"""One delivery from its arrival to its settlement (decode, idempotency, handler,
decision, settle), and the parts of a worker's lifecycle."""

__all__: list[str] = []  # the public names are re-exported by framework/__init__
