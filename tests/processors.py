"""Processors used by the runtime tests (importable by `supplybus run tests.processors:...`).

``keyed_sums`` records every applied StockMovement in ``applied_effects`` WITHOUT a unique
constraint, so a duplicate effect would show as an extra row. Key = item_id, sequence number
= reference_id, value = quantity. ``reason`` steers it: "reject" raises a business-rule error,
"emit" emits a StockoutRisk caused by the movement.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import caused_by

SETUP = """
CREATE TABLE IF NOT EXISTS applied_effects (
    seq        bigserial PRIMARY KEY,
    key        text NOT NULL,
    n          integer NOT NULL,
    value      numeric(18,3) NOT NULL,
    priority   text NOT NULL,
    event_id   uuid NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def setup(conn: psycopg.Connection) -> None:
    conn.execute(SETUP)
    conn.commit()


def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    rows: list[tuple[Any, ...]] = []
    emitted: list[Record] = []
    for e in events:
        r = e.record
        if r["reason"] == "reject":
            raise BusinessRuleError(f"movement {r['movement_id']} refused: reason says reject")
        rows.append(
            (
                r["item_id"],
                int(r["reference_id"]),
                r["quantity"]["value"],
                e.envelope["priority"],
                e.event_id,
            )
        )
        if r["reason"] == "emit":
            emitted.append(
                {
                    "envelope": caused_by(
                        e.envelope, "StockoutRisk", emitter="keyed-sums", discriminator=r["item_id"]
                    ),
                    "item_id": r["item_id"],
                    "location_id": r["location_id"],
                    "on_hand": {"value": r["quantity"]["value"], "uom": "EA"},
                    "days_of_supply": Decimal("1.50"),
                    "daily_usage": {"value": r["quantity"]["value"], "uom": "EA"},
                    "level": "HIGH",
                }
            )
    with (
        conn.cursor() as cur,
        cur.copy("COPY applied_effects (key, n, value, priority, event_id) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)
    return emitted


def keyed_sums() -> Processor:
    return Processor(
        name=os.environ.get("SUPPLYBUS_TEST_PROCESSOR", "keyed-sums"),
        consumes=("StockMovement",),
        handle=handle,
        setup=setup,
        batch_size=int(os.environ.get("SUPPLYBUS_TEST_BATCH", "500")),
    )


def slow_sums() -> Processor:
    """keyed_sums whose batches take SUPPLYBUS_TEST_SLEEP seconds, writing the file named by
    SUPPLYBUS_TEST_MARK first (so a test can stop the runner while a batch is in flight)."""
    import time
    from pathlib import Path

    def slow(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        mark = os.environ.get("SUPPLYBUS_TEST_MARK")
        if mark:
            Path(mark).write_text(str(len(events)))
        time.sleep(float(os.environ.get("SUPPLYBUS_TEST_SLEEP", "2")))
        return handle(events, conn)

    return Processor(
        name="slow-sums", consumes=("StockMovement",), handle=slow, setup=setup, batch_size=100
    )


GATE_SETUP = "CREATE TABLE IF NOT EXISTS blocked_items (item_id text PRIMARY KEY)"


def gated_sums() -> Processor:
    """keyed_sums that refuses a movement whose reason is "gate" while its item is in
    ``blocked_items`` (as a requisition for an item whose master data is missing): a dead
    letter that an operator can fix (delete the row) and replay."""

    def gated_setup(conn: psycopg.Connection) -> None:
        conn.execute(GATE_SETUP)
        setup(conn)

    def gated(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        items = [e.record["item_id"] for e in events if e.record["reason"] == "gate"]
        if items:
            blocked = conn.execute(
                "SELECT item_id FROM blocked_items WHERE item_id = ANY(%s)", (items,)
            ).fetchall()
            if blocked:
                raise BusinessRuleError(f"item {blocked[0][0]} is blocked")
        return handle([e for e in events], conn)

    return Processor(
        name="gated-sums",
        consumes=("StockMovement",),
        handle=gated,
        setup=gated_setup,
        batch_size=500,
    )
