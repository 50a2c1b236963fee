"""vm://: reach a broker in this process without a socket (see ferrymq.client._vm).

from ferrymq.client import connect, vm

vm.register("orders-broker", broker, loop)   # a core Broker and the loop it runs on
conn = connect("vm://orders-broker")

conn = connect("vm://localhost")             # nobody registered: an embedded broker starts
"""

from __future__ import annotations

from ferrymq.client._vm import EmbeddedBroker, VMTransport, lookup, register, shutdown, unregister

__all__ = ["EmbeddedBroker", "VMTransport", "lookup", "register", "shutdown", "unregister"]
