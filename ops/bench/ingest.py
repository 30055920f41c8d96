"""CSV file drops: ingest rate and peak memory for a 1,000,000-line file (issue 20, acc. 6).

A generated item-usage export (the shipped ``schemas/mappings/item-usage.yaml``: Windows
style CRLF, decimal comma, unit codes, local date-times) is ingested by ``FileIngest`` in a
child process of its own, so that its peak RSS (``getrusage``) is the ingest's alone; the same
for a file a tenth the size shows that memory does not grow with the file (goal: < 200 MB).
The baseline, in the same run: reading and mapping the same file without validation,
encoding or the broker.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from importlib import resources
from pathlib import Path

from confluent_kafka import KafkaException
from psycopg import sql

from supplybus.adapters.kafka import make_admin
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events.topics import load_catalog
from supplybus.ops import migrate, services, topic_admin
from supplybus.ops.bench.report import Section, ratio
from supplybus.producers.files import csv_reader
from supplybus.producers.files.ingest import FileIngest
from supplybus.producers.files.mapping import FileMapping, load_mapping, map_row

LINES = 1_000_000
GOAL_MB = 200.0
HEADER = "Usage Date;Item No;Location;Qty;Unit;Lot;Expiry;Case Ref\r\n"
_UNITS = ("EA", "CASE", "BOX", "EACH")


def mapping_path() -> Path:
    return Path(str(resources.files("supplybus.schemas") / "mappings" / "item-usage.yaml"))


def write_usage(path: Path, lines: int) -> None:
    """An item-usage export of ``lines`` data lines (deterministic)."""
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write(HEADER)
        for i in range(lines):
            f.write(
                f"{i % 28 + 1:02d}.11.2026 {i % 24:02d}:{i % 60:02d};ITEM-{i % 5000:05d};"
                f"LOC-{i % 7};{i % 9 + 1},{i % 10}00;{_UNITS[i % 4]};L-{i % 97};"
                f"31.12.2027;OR-{i}\r\n"
            )


def read_and_map(path: Path, mapping: FileMapping) -> int:
    """The baseline: scan, decode, parse and map every line; nothing validated or sent."""
    with path.open("rb") as raw:
        found = csv_reader.scan(raw)
    encoding = csv_reader.decide_encoding(found, mapping.encoding, path.name)
    mapped = 0
    with path.open("rb") as raw:
        rows = csv_reader.read_rows(raw, encoding, mapping.delimiter)
        header = next(rows)
        if not isinstance(header, csv_reader.Row):
            raise RuntimeError("bench: the generated header is not CSV")
        names, trailing = csv_reader.header_of(header, path.name)
        for row in rows:
            if isinstance(row, csv_reader.Row):
                cells = csv_reader.cells_by_header(names, trailing, row)
                if isinstance(cells, dict):
                    map_row(mapping, cells)
                    mapped += 1
    return mapped


def run(lines: int = LINES, base: Settings | None = None) -> Section:
    resolved = services.ensure_up(base or Settings.from_env())
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="supplybus-bench-ingest-") as tmp:
        own = replace(resolved, db_schema=f"bench_ingest_{tag}")
        settings = topic_admin.apply_private(own, Path(tmp), f"i{tag}.")
        migrate.migrate(settings)
        try:
            return _measure(settings, Path(tmp), lines)
        finally:
            _drop(settings)


def _measure(settings: Settings, tmp: Path, lines: int) -> Section:
    mapping = load_mapping(mapping_path())
    section = Section(f"CSV file drops ({lines:,} lines, item-usage mapping)")
    small = max(lines // 10, 1)
    runs = {}
    for n in (small, lines):
        drop = tmp / f"drop-{n}"
        drop.mkdir()
        write_usage(drop / f"usage-{n}.csv", n)
        runs[n] = _child(settings, drop / f"usage-{n}.csv")
        if runs[n]["accepted"] != n:
            raise RuntimeError(f"bench: {runs[n]['accepted']} of {n} lines published")
    done = tmp / f"drop-{lines}" / "done" / f"usage-{lines}.csv"
    started = time.perf_counter()
    read_and_map(done, mapping)
    baseline = lines / (time.perf_counter() - started)
    full = runs[lines]
    rate = lines / full["seconds"]
    section.add("read + map only (no validation, no broker): baseline", baseline, "lines/s")
    section.add(
        "ingest: read, map, validate, encode, publish, move",
        rate,
        "lines/s",
        f"{ratio(rate, baseline)} of the baseline; {full['seconds']:.1f} s",
    )
    grow = full["peak_mb"] / runs[small]["peak_mb"]
    section.add(f"peak RSS, {small:,} lines", runs[small]["peak_mb"], "MB", "child process")
    section.add(
        f"peak RSS, {lines:,} lines",
        full["peak_mb"],
        "MB",
        f"goal < {GOAL_MB:.0f} MB: {'met' if full['peak_mb'] < GOAL_MB else 'MISSED'}; "
        f"{grow:.2f}x the {small:,}-line run",
    )
    return section


def _child(settings: Settings, path: Path) -> dict[str, float]:
    env = dict(os.environ) | {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "DATABASE_URL": settings.database_url or "",
        "SUPPLYBUS_DB_SCHEMA": settings.db_schema,
        "SUPPLYBUS_TOPIC_CATALOG": str(settings.topic_catalog),
    }
    done = subprocess.run(
        [sys.executable, "-m", "supplybus.ops.bench.ingest", str(path)],
        env=env, capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench: the ingest child failed: {done.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def child(path: Path) -> dict[str, float]:
    """In the child: ingest one file; its time, count and this process's peak RSS."""
    settings = Settings.from_env()
    ingest = FileIngest(
        settings,
        load_mapping(mapping_path()),
        done_dir=path.parent / "done",
        failed_dir=path.parent / "failed",
    )
    started = time.perf_counter()
    outcome = ingest.ingest(path)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "accepted": outcome.accepted, "peak_mb": _peak_kb() / 1024}


def _peak_kb() -> int:
    """This process's peak RSS in KiB: VmHWM, which exec resets (ru_maxrss keeps the peak of
    the forked parent's image, e.g. a pytest process hundreds of MB large)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def _drop(settings: Settings) -> None:
    with connect(settings, autocommit=True) as conn:
        schema = sql.Identifier(settings.db_schema)
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
    admin = make_admin(settings)
    names = [t.name for t in load_catalog(settings.topic_catalog).topics]
    for future in admin.delete_topics(names, operation_timeout=15).values():
        with contextlib.suppress(KafkaException):  # best effort: memory-only broker
            future.result(timeout=20)


if __name__ == "__main__":
    print(json.dumps(child(Path(sys.argv[1]))))
