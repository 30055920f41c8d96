"""The codec the settings ask for: the one place that knows both framings."""

from __future__ import annotations

from supplybus.events.codec import Codec
from supplybus.events.confluent import ConfluentCodec
from supplybus.events.schema_store import SchemaStore
from supplybus.events.single_object import SingleObjectCodec


def make_codec(store: SchemaStore, schema_registry_url: str | None = None) -> Codec:
    """The Confluent wire format when a schema registry URL is given, else single-object."""
    if schema_registry_url:
        return ConfluentCodec(store, schema_registry_url)
    return SingleObjectCodec(store)
