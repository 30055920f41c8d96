"""The CSV file-drop bench section runs end to end on the real broker and database (small
file; the rates and memory are what `make bench` reports for 1,000,000 lines)."""

from __future__ import annotations

from pathlib import Path

from supplybus.config import Settings
from supplybus.ops.bench import ingest as bench
from supplybus.producers.files.mapping import load_mapping


def test_the_generated_export_maps_line_for_line(tmp_path: Path) -> None:
    path = tmp_path / "usage.csv"
    bench.write_usage(path, 500)
    assert bench.read_and_map(path, load_mapping(bench.mapping_path())) == 500


def test_the_section_ingests_every_line_and_reports_memory(settings: Settings) -> None:
    section = bench.run(lines=3000, base=settings)
    rows = {what: (rate, unit) for what, rate, unit, _ in section.rows}
    assert rows["read + map only (no validation, no broker): baseline"][0] > 0
    assert rows["ingest: read, map, validate, encode, publish, move"][0] > 0
    assert rows["peak RSS, 3,000 lines"][0] > 0  # the goal is judged by make bench, not here
    assert rows["peak RSS, 300 lines"][1] == "MB"
