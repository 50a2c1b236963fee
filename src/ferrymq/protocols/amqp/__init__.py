"""AMQP 0-9-1: the codec (`codec`, `tables`, `properties`, `constants`) and, later, the
server's connection state machine. Import from the submodules; this package re-exports nothing
so that importing it stays cheap.
"""
