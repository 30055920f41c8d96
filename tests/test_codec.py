"""The Avro codec: single-object framing, schema resolution, interop with Apache avro."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supplybus.errors import DecodeError
from supplybus.events.confluent import ConfluentCodec
from supplybus.events.framing import make_codec
from supplybus.events.samples import sample_record
from supplybus.events.schema_store import default_store, load_store, schemas_dir
from supplybus.events.single_object import MAGIC, SingleObjectCodec
from tests.strategies import stock_movements

STORE = default_store()
CODEC = SingleObjectCodec(STORE)


def _normal(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, default=str))


@pytest.mark.parametrize("event_type", STORE.event_types)
def test_every_event_type_round_trips(event_type: str) -> None:
    record = sample_record(STORE.latest(event_type), seed=7)
    data = CODEC.encode(record)
    assert data[:2] == MAGIC and data[2:10] == STORE.latest(event_type).fingerprint
    decoded = CODEC.decode(data)
    assert decoded.event_type == event_type
    assert decoded.version == STORE.latest(event_type).version
    assert _normal(decoded.record) == _normal(record)


@settings(max_examples=200, deadline=None)
@given(stock_movements())
def test_stock_movement_round_trip_property(record: dict[str, Any]) -> None:
    assert _normal(CODEC.decode(CODEC.encode(record)).record) == _normal(record)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_decode_error_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        CODEC.decode(data)


@settings(max_examples=200, deadline=None)
@given(
    stock_movements(), st.integers(min_value=10, max_value=400), st.binary(min_size=1, max_size=4)
)
def test_corrupted_body_never_crashes(record: dict[str, Any], at: int, junk: bytes) -> None:
    data = bytearray(CODEC.encode(record))
    at = min(at, len(data) - 1)
    data[at : at + len(junk)] = junk
    with contextlib.suppress(DecodeError):
        CODEC.decode(bytes(data))


def test_unknown_fingerprint_and_bad_marker_are_named() -> None:
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint 0102030405060708"):
        CODEC.decode(MAGIC + bytes(range(1, 9)) + b"\x00")
    with pytest.raises(DecodeError, match="expected marker c301"):
        CODEC.decode(b'{"json": true}')
    with pytest.raises(DecodeError, match="0 bytes"):
        CODEC.decode(None)


def test_old_writer_is_read_with_the_newest_reader(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(schemas_dir() / "inventory", root / "inventory")
    v1_raw = json.loads((root / "inventory" / "StockMovement.v1.avsc").read_text())
    v2_raw = json.loads(json.dumps(v1_raw))
    v2_raw["fields"].append({"name": "bin", "type": "string", "default": "MAIN"})
    (root / "inventory" / "StockMovement.v2.avsc").write_text(json.dumps(v2_raw))
    v1_only = SingleObjectCodec(load_store(schemas_dir()))
    both = SingleObjectCodec(load_store(root))
    old_bytes = v1_only.encode(sample_record(STORE.latest("StockMovement")))
    decoded = both.decode(old_bytes)
    assert decoded.version == 1  # the writer's version
    assert decoded.record["bin"] == "MAIN"  # filled from the v2 reader's default


def _avro_schema(event_type: str) -> avro.schema.Schema:
    return avro.schema.parse(STORE.latest(event_type).path.read_text())


@pytest.mark.parametrize("event_type", ["StockMovement", "RequisitionSubmitted", "InvoiceReceived"])
def test_apache_avro_reads_what_supplybus_writes(event_type: str) -> None:
    record = sample_record(STORE.latest(event_type), seed=3)
    data = CODEC.encode(record)
    reader = avro.io.DatumReader(_avro_schema(event_type))
    read = reader.read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    assert _normal(read) == _normal(record)


@pytest.mark.parametrize("event_type", ["StockMovement", "RequisitionSubmitted", "InvoiceReceived"])
def test_supplybus_reads_what_apache_avro_writes(event_type: str) -> None:
    record = sample_record(STORE.latest(event_type), seed=4)
    schema = _avro_schema(event_type)
    for_avro = json.loads(json.dumps(record, default=str))
    _restore_logical(record, for_avro)
    buf = io.BytesIO()
    avro.io.DatumWriter(schema).write(for_avro, avro.io.BinaryEncoder(buf))
    framed = MAGIC + STORE.latest(event_type).fingerprint + buf.getvalue()
    assert _normal(CODEC.decode(framed).record) == _normal(record)


def _restore_logical(original: Any, converted: Any) -> None:
    """Put back the Decimal/date/datetime objects json flattened (avro needs them)."""
    if isinstance(original, dict):
        for k, v in original.items():
            if isinstance(v, dict | list):
                _restore_logical(v, converted[k])
            elif not isinstance(v, str | int | float | bool | type(None)):
                converted[k] = v
    elif isinstance(original, list):
        for i, v in enumerate(original):
            if isinstance(v, dict | list):
                _restore_logical(v, converted[i])
            elif not isinstance(v, str | int | float | bool | type(None)):
                converted[i] = v


def test_confluent_wire_format_round_trip_with_registry() -> None:
    codec = ConfluentCodec(STORE, "mock://supplybus-test")
    record = sample_record(STORE.latest("GoodsReceived"))
    data = codec.encode(record)
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert codec.client.get_schema(schema_id).schema_str
    fresh = ConfluentCodec(STORE, "mock://supplybus-test")  # resolves the id via the registry
    fresh.client = codec.client
    assert _normal(fresh.decode(data).record) == _normal(record)
    with pytest.raises(DecodeError, match="expected magic byte 00"):
        codec.decode(CODEC.encode(record))


def test_make_codec_picks_the_framing_from_the_registry_url() -> None:
    assert make_codec(STORE).framing == "single-object"
    assert make_codec(STORE, "mock://supplybus-pick").framing == "confluent"
