"""`make demo`: start the services, apply the catalog, publish a few events and show them.

The full simulated health network (issue #9) builds on this; for now the demo shows the
backbone itself: embedded services, topics, validated Avro events, routing and headers.
"""

from __future__ import annotations

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from rich.console import Console
from rich.table import Table

from supplybus.adapters.kafka import make_consumer
from supplybus.config import Settings
from supplybus.errors import SupplybusError
from supplybus.events import jsonio
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id
from supplybus.events.samples import sample_record
from supplybus.ops import services
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
            sent.append(pub.publish(record))
    console.print(f"published {len(sent)} validated events (correlation id demo-{run_id})")
    table = Table("topic", "partition@offset", "event", "key", "priority", "payload (excerpt)")
    wanted = {o.envelope["event_id"] for o in sent}
    consumer = make_consumer(settings, f"demo-{run_id}")
    consumer.assign(
        [
            TopicPartition(o.topic, p, OFFSET_BEGINNING)
            for o in sent
            for p in range(catalog.topics.topic(o.topic).partitions)
        ]
    )
    deadline = time.monotonic() + 15
    while wanted and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error():
                continue
            decoded = catalog.codec.decode(msg.value())
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
    consumer.close()
    console.print(table)
    if wanted:
        raise SupplybusError(f"{len(wanted)} demo event(s) were not read back within 15 s")
    console.print("[green]demo complete[/]: services keep running; `make down` stops them.")


def main() -> int:
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        run(console)
    except SupplybusError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
