"""What goes on the wire and the seam to the broker: names, the envelope and its AMQP
properties, topology, connections, publishing, consuming and acking."""

__all__: list[str] = []  # the public names are re-exported by framework/__init__
