"""Codec rates for a StockMovement on one core, next to plain fastavro in the same run."""

from __future__ import annotations

from io import BytesIO

import fastavro

from supplybus.events.samples import sample_record
from supplybus.events.schema_store import default_store
from supplybus.events.single_object import HEADER_LEN, SingleObjectCodec
from supplybus.ops.bench.report import Section, rate, ratio

GOAL = 100_000


def run(n: int = 50_000) -> Section:
    store = default_store()
    sv = store.latest("StockMovement")
    codec = SingleObjectCodec(store)
    record = sample_record(sv)
    framed = codec.encode(record)
    body = framed[HEADER_LEN:]

    def raw_encode() -> None:
        for _ in range(n):
            out = BytesIO()
            fastavro.schemaless_writer(out, sv.parsed, record)

    def raw_decode() -> None:
        for _ in range(n):
            fastavro.schemaless_reader(BytesIO(body), sv.parsed)

    def encode() -> None:
        for _ in range(n):
            codec.encode(record)

    def decode() -> None:
        for _ in range(n):
            codec.decode(framed)

    section = Section(f"codec: StockMovement ({len(framed)} bytes framed), one core")
    base_enc = section.add("fastavro schemaless_writer (baseline)", rate(n, raw_encode))
    base_dec = section.add("fastavro schemaless_reader (baseline)", rate(n, raw_decode))
    enc = rate(n, encode)
    dec = rate(n, decode)
    section.add(
        "supplybus encode (single-object)",
        enc,
        note=f"{ratio(enc, base_enc)} of baseline; goal {GOAL:,}",
    )
    section.add(
        "supplybus decode (single-object)",
        dec,
        note=f"{ratio(dec, base_dec)} of baseline; goal {GOAL:,}",
    )
    return section
