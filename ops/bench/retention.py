"""Ledger claim cost against the ledger's size, before and after `db prune` (issue 16).

The issue asks for 20 million ledger rows; on 2 shared cores this section bulk-inserts
``LEDGER_ROWS`` (3 million, ``generate_series``, one processor, processed over the last 90
days) so that it runs in about a minute, then prunes with the default horizons (45 days: about
half goes). The claim is ``ledger.claim`` as a lane runs it, 1000 events per transaction,
timed alone (commit excluded); the baseline is the same claim on the empty ledger, measured in
the same run and schema. Everything lives in a private schema dropped at the end.
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import replace

import psycopg
from psycopg import sql

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import ledger, retention
from supplybus.consumers.runtime.processor import Event
from supplybus.ops import migrate, services
from supplybus.ops.bench.pipeline import PipelineSection
from supplybus.ops.bench.report import Section, ratio

LEDGER_ROWS = 3_000_000
SPAN_DAYS = 90
BATCH = 1000
ROUNDS = 40
PROCESSOR = "bench-ledger"
TOPIC = "inventory.stock-movements.v1"

_LOAD = """
INSERT INTO processed_events (processor, event_id, topic, partition, "offset", processed_at)
SELECT %(processor)s, md5(%(tag)s || i)::uuid, %(topic)s, i %% 3, i,
       now() - make_interval(secs => (%(n)s - i) * %(step)s)
FROM generate_series(1, %(n)s) AS i
"""


def _batch(offset: int) -> list[Event]:
    return [
        Event("StockMovement", {"envelope": {"event_id": str(uuid.uuid4())}}, TOPIC, 0, offset + i)
        for i in range(BATCH)
    ]


def claim_cost(conn: psycopg.Connection) -> tuple[float, float]:
    """Median milliseconds to claim 1000 new events, then 1000 re-delivered ones."""
    fresh: list[float] = []
    again: list[float] = []
    for n in range(ROUNDS):
        events = _batch(n * BATCH)
        for times in (fresh, again):  # the same events twice: new, then all duplicates
            with conn.transaction():
                started = time.perf_counter()
                ledger.claim(conn, PROCESSOR, events)
                times.append((time.perf_counter() - started) * 1000)
    return statistics.median(fresh), statistics.median(again)


def run(n: int = LEDGER_ROWS) -> Section:
    started = time.perf_counter()
    base = services.ensure_up(Settings.from_env(), kafka=False)
    settings = replace(base, db_schema=f"bench_ret_{uuid.uuid4().hex[:8]}")
    migrate.migrate(settings)
    try:
        return _measure(settings, n, started)
    finally:
        with connect(settings, autocommit=True) as conn:
            schema = sql.Identifier(settings.db_schema)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


def _count(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM processed_events").fetchone()
    return int(row[0]) if row else 0


def _measure(settings: Settings, n: int, started: float) -> PipelineSection:
    horizons = retention.Horizons.from_settings(settings)
    section = PipelineSection(
        f"ledger claim vs ledger size (#16): {BATCH} events per claim, median of {ROUNDS}; "
        f"{n:,} rows over {SPAN_DAYS} days, prune horizon {horizons.ledger_days} days"
    )
    unit = "ms/1000 events"
    with connect(settings) as conn:
        base_new, base_again = claim_cost(conn)
        section.add("claim new events, empty ledger", base_new, unit, "baseline")
        section.add("claim re-delivered events, empty ledger", base_again, unit, "baseline")
        conn.execute("TRUNCATE processed_events")
        load_started = time.perf_counter()
        params = {"processor": PROCESSOR, "tag": "b", "topic": TOPIC, "n": n}
        conn.execute(_LOAD, {**params, "step": SPAN_DAYS * 86400 / n})
        conn.commit()
        section.add(
            "bulk load (generate_series)", n / (time.perf_counter() - load_started), "rows/s"
        )
    with connect(settings, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE processed_events")
    with connect(settings) as conn:
        big_new, big_again = claim_cost(conn)
        rows = _count(conn)
    section.add(f"claim new events, {rows:,} rows", big_new, unit, f"{ratio(big_new, base_new)}")
    section.add(
        f"claim re-delivered events, {rows:,} rows",
        big_again,
        unit,
        f"{ratio(big_again, base_again)}",
    )
    with connect(settings, autocommit=True) as conn:
        report = retention.prune(conn, horizons, chunk=settings.prune_chunk)
        pruned = report.deleted["processed_events"]
        vacuum_started = time.perf_counter()
        conn.execute("VACUUM ANALYZE processed_events")  # what autovacuum does after a prune
        vacuum_s = time.perf_counter() - vacuum_started
    section.add(
        f"db prune: {pruned:,} ledger rows",
        pruned / report.seconds,
        "rows/s",
        f"{report.seconds:.1f}s in chunks of {settings.prune_chunk:,}; VACUUM {vacuum_s:.1f}s",
    )
    with connect(settings) as conn:
        after_new, after_again = claim_cost(conn)
        left = _count(conn)
    section.add(
        f"claim new events after prune, {left:,} rows",
        after_new,
        unit,
        f"{ratio(after_new, base_new)}; {ratio(after_new, big_new)} before the prune",
    )
    section.add(
        f"claim re-delivered events after prune, {left:,} rows",
        after_again,
        unit,
        f"{ratio(after_again, base_again)}; {ratio(after_again, big_again)} before the prune",
    )
    section.footer = (
        f"Ratios are against the empty-ledger baseline of this run. The issue's 20 million rows "
        f"are scaled down to {n:,} to run in this section's {time.perf_counter() - started:.0f}s "
        "on 2 shared cores."
    )
    return section
