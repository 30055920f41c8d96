"""Canonical events: the event catalog, Avro codec and validation."""
