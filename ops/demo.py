"""`make demo`: the backbone at work on the embedded broker and database.

1. Start the services, apply the catalog, publish a few validated events and read them back.
2. Publish 3,000 stock movements for three storerooms, the same file again (a resend) and a
   poison record, then run the stock-balances processor: every movement is applied once, the
   resend is skipped by the ledger, the poison record is dead-lettered, and the balances equal
   the sums of what was published.

The full simulated health network (issue #9) builds on this.
"""

from __future__ import annotations

import logging
import sys
import time
from contextlib import closing
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from supplybus.adapters.kafka import read_records
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory import balances
from supplybus.consumers.runtime.runner import STUCK_GROUP, Runner
from supplybus.errors import DecodeError, SupplybusError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from supplybus.events.samples import sample_record
from supplybus.ops import services
from supplybus.ops.items import register_items
from supplybus.producers.publisher import Publisher

DEMO_EVENTS = ("ItemUpserted", "RequisitionSubmitted", "StockMovement", "GoodsReceived")


def run(console: Console) -> None:
    console.rule("supplybus demo")
    report = services.up(Settings.from_env())
    settings = report.settings
    started = ", ".join(report.started) or "already running"
    console.print(f"broker   {settings.kafka_bootstrap_servers}  ({started})")
    console.print(f"topics   {len(report.topics)} in the catalog")
    catalog = EventCatalog.from_settings(settings)
    run_id = deterministic_id("demo", time.time())[:8]
    with Publisher.from_settings(settings) as pub:
        sent = []
        for i, event_type in enumerate(DEMO_EVENTS):
            record = sample_record(catalog.store.latest(event_type), seed=i)
            record["envelope"]["correlation_id"] = f"demo-{run_id}"
            if event_type == "RequisitionSubmitted":
                record["urgency"] = "STAT"
                record["envelope"]["priority"] = "CRITICAL"
            if event_type == "StockMovement":  # its item, known to the item master
                register_items(settings, [(record["item_id"], record["quantity"]["uom"])])
            sent.append(pub.publish(record))
    console.print(f"published {len(sent)} validated events (correlation id demo-{run_id})")
    table = Table("topic", "partition@offset", "event", "key", "priority", "payload (excerpt)")
    wanted = {o.envelope["event_id"] for o in sent}
    topics = {o.topic: catalog.topics.topic(o.topic).partitions for o in sent}
    with closing(read_records(settings, topics, quiet_s=None, timeout_s=15)) as records:
        for msg in records:
            try:
                decoded = catalog.codec.decode(msg.value())
            except DecodeError:  # e.g. an earlier demo's poison record: not ours
                continue
            if decoded.envelope["event_id"] not in wanted:
                continue
            wanted.discard(decoded.envelope["event_id"])
            payload = {k: v for k, v in decoded.record.items() if k != "envelope"}
            table.add_row(
                msg.topic(),
                f"{msg.partition()}@{msg.offset()}",
                decoded.event_type,
                (msg.key() or b"").decode(),
                decoded.envelope["priority"],
                jsonio.dumps(payload)[:70],
            )
            if not wanted:
                break
    console.print(table)
    if wanted:
        raise SupplybusError(f"{len(wanted)} demo event(s) were not read back within 15 s")
    runtime_demo(console, settings, catalog, run_id)
    console.print("[green]demo complete[/]: services keep running; `make down` stops them.")


def _movements(run_id: str, catalog: EventCatalog) -> list[dict[str, Any]]:
    records = []
    for n in range(3000):
        record = sample_record(catalog.store.latest("StockMovement"), seed=n)
        record["envelope"]["event_id"] = deterministic_id("demo-move", run_id, n)
        record["envelope"]["correlation_id"] = f"demo-{run_id}"
        record["item_id"] = f"DEMO-{run_id}-{n % 10:02d}"
        record["location_id"] = ("MAIN-STORES", "OR-CORE", "ICU-PAR")[n % 3]
        receipt = (n // 10) % 4 == 0  # a quarter receipts (in cases of 6), the rest issues
        record["kind"] = "RECEIPT" if receipt else "ISSUE"
        record["quantity"] = {"value": Decimal((n % 5 + 1) * (6 if receipt else 1)), "uom": "EA"}
        record["lot_number"] = None
        records.append(record)
    return records


def runtime_demo(console: Console, settings: Settings, catalog: EventCatalog, run_id: str) -> None:
    console.rule("exactly-once processing")
    records = _movements(run_id, catalog)
    prepared = [catalog.prepare(r) for r in records]
    topic = catalog.topics.topic_for("StockMovement").name
    with Publisher.from_settings(settings) as pub:
        for out in prepared + prepared:  # the second copy is a resend: same event ids
            pub.send(out)
        pub.producer.produce(topic, b"\xc3\x01 not an event", b"POISON@MAIN-STORES")
    console.print(f"published {len(prepared)} stock movements twice (a resend) and 1 poison record")
    register_items(settings, sorted({(r["item_id"], "EA") for r in records}))
    started = time.monotonic()
    runner = Runner(
        settings,
        [balances.processor],
        relay=True,
        until_idle=2.0,
        signals=False,
        assignment_timeout=60.0,
    )
    if runner.run() != 0:
        if runner.unassigned:
            raise SupplybusError(STUCK_GROUP % (", ".join(runner.unassigned), 60.0))
        raise SupplybusError("the stock-balances processor stopped with an error")
    stats = [lane.stats for lane in runner.lanes]
    console.print(
        f"stock-balances: {sum(s.applied for s in stats)} applied, "
        f"{sum(s.duplicates for s in stats)} duplicates skipped, "
        f"{sum(s.dead for s in stats)} dead-lettered "
        f"in {time.monotonic() - started:.1f}s (including the consumer-group join)"
    )
    expected: dict[tuple[str, str], Decimal] = {}
    for r in records:
        key = (r["location_id"], r["item_id"])
        expected[key] = expected.get(key, Decimal(0)) + balances.signed_quantity(r)
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT location_id, item_id, on_hand, movements FROM stock_balances"
            " WHERE item_id LIKE %s ORDER BY item_id, location_id",
            (f"DEMO-{run_id}-%",),
        ).fetchall()
        dead = conn.execute(
            'SELECT topic, partition, "offset", error_code, message FROM dead_letters'
            " WHERE key = %s ORDER BY id DESC LIMIT 1",
            (b"POISON@MAIN-STORES",),
        ).fetchone()
    table = Table("location", "item", "on hand", "movements", "published sum", "match")
    for location, item, on_hand, movements in rows[:9]:
        want = expected[(location, item)]
        table.add_row(
            location,
            item,
            f"{on_hand:,.3f}",
            str(movements),
            f"{want:,.3f}",
            "[green]yes[/]" if on_hand == want else "[red]NO[/]",
        )
    console.print(table)
    mismatches = [r for r in rows if r[2] != expected[(r[0], r[1])]]
    if len(rows) != len(expected) or mismatches:
        raise SupplybusError(f"balances differ from what was published: {mismatches[:3]}")
    console.print(f"all {len(rows)} balances equal the published sums (each movement once)")
    if dead is not None:
        console.print(f"dead letter: {dead[0]}[{dead[1]}]@{dead[2]} {dead[3]}: {dead[4][:90]}")


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the demo prints what happened itself
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        run(console)
    except SupplybusError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
