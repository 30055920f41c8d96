"""Avro schemas (``.avsc``), the source of truth of the canonical events; data only."""
