"""Wire protocols, each sans-IO: a codec (bytes <-> frames) and a per-connection state machine."""
