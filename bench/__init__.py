"""FerryMQ's own AMQP 0-9-1 benchmark (`make bench`, i.e. `python -m bench`).

A raw-socket load generator (pre-encoded publish frames, deliveries counted by walking frame
headers; producer and consumer in separate processes) run against FerryMQ and, optionally, a
reference broker in the same run. See docs/benchmarks.md for the method and the numbers.
"""

from __future__ import annotations
