"""Listeners, configuration and the node's lifecycle: the only layer that touches sockets."""
