"""Dead-letter workbench: `dlq list` on 100,000 dead letters and `dlq replay` throughput.

``DEAD_LETTERS`` StockMovement dead letters of ``stock-balances`` (five error codes, two
topics) are bulk-loaded into a private schema as the runtime stores them. `dlq list` is timed
as the CLI runs it (the counts grouped by processor, topic and error code, then the first page
of 50). Replay is ``Replayer`` on ``REPLAYED`` of them (the chunks, the ledger, the processor's
effects, marking them replayed, the dead-letter log); the baseline is the same events applied
by the processor's ``BatchApplier`` as a lane would, without the dead letters, in the same run.
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
from supplybus.consumers.inventory.balances import processor as stock_balances
from supplybus.consumers.runtime import dlq_store
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.replay import Replayer, Result
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.ops import migrate, services
from supplybus.ops.bench.report import Section, ratio
from supplybus.ops.items import register_items

DEAD_LETTERS = 100_000
REPLAYED = 20_000
GOAL = 5_000.0
_ERRORS = ("BUSINESS_RULE", "VALIDATION", "DECODE", "CONTRACT", "UNEXPECTED")
_COPY = (
    'COPY dead_letters (processor, topic, partition, "offset", record_timestamp, key, value,'
    " event_id, event_type, correlation_id, error_class, error_code, message, stack_digest,"
    " dlq_topic, record_digest, dead_letter_id) FROM STDIN"
)


def _movement(n: int) -> dict[str, object]:
    from decimal import Decimal

    event_id = deterministic_id("bench-dlq", n)
    return {
        "envelope": new_envelope(
            "StockMovement", source_system="bench", entity_id="ENT-1", actor="bench",
            event_id=event_id, correlation_id=f"bench-dlq-{n}",
        ),
        "movement_id": event_id, "kind": "RECEIPT", "item_id": f"ITEM-{n % 5000:05d}",
        "location_id": f"LOC-{n % 7}", "lot_number": None, "expiry_date": None,
        "quantity": {"value": Decimal(n % 9 + 1), "uom": "EA"},
        "counterpart_location_id": None, "reference_id": str(n), "reason": None,
    }  # fmt: skip


def _load(conn: psycopg.Connection, catalog: EventCatalog, n: int) -> str:
    """``n`` dead letters; returns the StockMovement topic."""
    topic = catalog.topics.topic_for("StockMovement").name
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        for i in range(n):
            out = catalog.prepare(_movement(i))
            source = topic if i % 4 else f"{topic}.critical"
            copy.write_row((
                "stock-balances", source, i % 3, i, "2026-11-29T00:00:00Z", out.key, out.value,
                str(out.envelope["event_id"]), "StockMovement", f"bench-dlq-{i}",
                "BusinessRuleError", _ERRORS[i % len(_ERRORS)], "bench", "0" * 16,
                f"{source}.dlq", f"bench-{i}", deterministic_id("bench-dead-letter", i),
            ))  # fmt: skip
    conn.commit()
    return topic


def _list_ms(conn: psycopg.Connection) -> float:
    """Median milliseconds of `dlq list`'s two queries (counts, then the first page)."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        dlq_store.summary(conn, dlq_store.DlqFilter())
        dlq_store.rows(conn, dlq_store.DlqFilter(), limit=50)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _baseline(conn: psycopg.Connection, catalog: EventCatalog, n: int) -> float:
    """Events per second of the same records applied as a lane applies a batch."""
    proc = replace(stock_balances, name="bench-baseline")
    applier = BatchApplier(proc, catalog, lambda t: f"{t}.dlq")
    decode = BatchDecoder(catalog, proc.consumes)
    rows = conn.execute(
        'SELECT topic, partition, "offset", key, value FROM dead_letters ORDER BY id LIMIT %s',
        (n,),
    ).fetchall()
    from confluent_kafka import Message

    msgs = [Message(topic=t, partition=p, offset=o, key=bytes(k), value=bytes(v),
                    timestamp=(1, 0)) for t, p, o, k, v in rows]  # fmt: skip
    started = time.perf_counter()
    for i in range(0, len(msgs), 1000):
        applier.apply(conn, decode(msgs[i : i + 1000]).events, [])
        conn.commit()
    return len(msgs) / (time.perf_counter() - started)


#: A processor whose handler does nothing: what replaying costs by itself.
NOOP = replace(stock_balances, name="bench-noop", handle=lambda events, conn: [], setup=None)


def _replay(
    conn: psycopg.Connection, replayer: Replayer, ids: list[str]
) -> tuple[list[Result], float]:
    started = time.perf_counter()
    results = replayer.replay(conn, ids)
    return results, len(results) / (time.perf_counter() - started)


def run(n: int = DEAD_LETTERS, replayed: int = REPLAYED) -> Section:
    base = services.ensure_up(Settings.from_env(), kafka=False)
    settings = replace(base, db_schema=f"bench_dlq_{uuid.uuid4().hex[:8]}")
    migrate.migrate(settings)
    try:
        return _measure(settings, n, replayed)
    finally:
        with connect(settings, autocommit=True) as conn:
            schema = sql.Identifier(settings.db_schema)
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))


def _measure(settings: Settings, n: int, replayed: int) -> Section:
    catalog = EventCatalog.from_settings(settings)
    section = Section(f"dead-letter workbench ({n:,} dead letters, {replayed:,} replayed)")
    register_items(settings, ((f"ITEM-{i:05d}", "EA") for i in range(5000)))
    with connect(settings) as conn:
        _load(conn, catalog, n)
        conn.execute("ANALYZE dead_letters")
        conn.commit()
        listed = _list_ms(conn)
        baseline = _baseline(conn, catalog, replayed)
        ids = [r for (r,) in conn.execute(
            "SELECT dead_letter_id::text FROM dead_letters ORDER BY id LIMIT %s", (replayed,)
        )]  # fmt: skip
        conn.commit()
        results, speed = _replay(conn, Replayer(stock_balances, catalog, "bench"), ids)
        rest = [r for (r,) in conn.execute(
            "SELECT dead_letter_id::text FROM dead_letters WHERE status = 'open' ORDER BY id"
            " LIMIT %s", (replayed,)
        )]  # fmt: skip
        conn.execute("UPDATE dead_letters SET processor = 'bench-noop' WHERE dead_letter_id ="
                     " ANY(%s::uuid[])", (rest,))  # fmt: skip
        conn.commit()
        _, bare = _replay(conn, Replayer(NOOP, catalog, "bench"), rest)
    applied = sum(r.outcome == "applied" for r in results)
    if applied != replayed:
        raise RuntimeError(f"bench: {applied} of {replayed} dead letters applied")
    section.add("`dlq list`: counts by group + first page of 50", 1000 / listed, "lists/s",
                f"{listed:.1f} ms on {n:,} dead letters")  # fmt: skip
    section.add("apply the same events as a lane (baseline)", baseline)
    met = "met" if speed >= GOAL else "NOT met"
    section.add(
        "`dlq replay` through stock-balances (ledger, effects, status, log)",
        speed,
        "records/s",
        f"{ratio(speed, baseline)} the baseline; goal >= {GOAL:,.0f}/s: {met}",
    )
    section.add("`dlq replay` through a processor that does nothing", bare, "records/s",
                "the workbench's own cost: lock, decode, ledger, status, log")  # fmt: skip
    return section
