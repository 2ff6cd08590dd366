"""Building and sending outgoing messages: envelopes, batches, retries on overload,
requests and replies."""

__all__: list[str] = []  # the public names are re-exported by framework/__init__
