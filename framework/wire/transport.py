"""What a Worker runs on: the `Bus` (kept importable under this name).

There is one bus class; `framework.testing.MemoryBus` is the same `Bus` over the in-memory
broker port. The seam to the broker is `framework.wire.port.BrokerPort`.
"""

from __future__ import annotations

from framework.bus import Bus as Transport

__all__ = ["Transport"]
