"""Processor pipeline (issue #5): the runtime against the consumer ceiling and a Faust agent.

One run, one data set (100,000 StockMovement, 2,000 items x 5 locations) in a private topic
catalog (``b<hex>.``), PostgreSQL schema and group prefix, all dropped at the end. A: plain
consumer + decode; B: ``Runner`` + stock-balances, from the lane's assignment (group join
excluded) until the ledger holds every event; C: B emitting one StockoutRisk per event (outbox);
D: the same logic in memory as a faust-streaming agent (subprocess), per event and ``take``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path

import psycopg
from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition
from psycopg import sql
from rich.console import Console

from supplybus.adapters.kafka import make_admin, make_consumer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory import balances
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import SupplybusError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import caused_by, new_envelope
from supplybus.ops import migrate, services, topic_admin
from supplybus.ops.bench import faust_peer
from supplybus.ops.bench.faust_peer import TAKE, WITHIN
from supplybus.ops.bench.report import Section, ratio
from supplybus.ops.items import register_items
from supplybus.producers.publisher import Publisher

EVENTS = 100_000
ITEMS, LOCATIONS = 2_000, 5
BATCH = 1000
RATIO_GOAL, FAUST_GOAL = 0.6, 5.0
POLL_S = 0.05
STAGE_TIMEOUT_S = 90.0
KINDS = ("RECEIPT", "ISSUE", "TRANSFER_IN", "TRANSFER_OUT", "ADJUSTMENT", "RETURN", "WRITE_OFF")
KIND_WEIGHTS = (25, 45, 8, 8, 6, 5, 3)
UOMS = ("EA", "EA", "EA", "BX", "ML")


class BenchError(SupplybusError):
    """The pipeline bench could not measure (a stage timed out or counted wrong)."""


@dataclass
class PipelineSection(Section):
    """A Section with a closing line printed under the table."""

    footer: str = ""

    def print(self, console: Console) -> None:
        super().print(console)
        if self.footer:
            console.print(self.footer)


def movement(rng: random.Random, i: int) -> dict[str, object]:
    """One realistic StockMovement: varied kinds, items, locations, lots, units and sources."""
    item, loc = rng.randrange(ITEMS), rng.randrange(LOCATIONS)
    kind = rng.choices(KINDS, KIND_WEIGHTS)[0]
    lot = f"L{item % 89:02d}-{rng.randrange(3)}" if item % 3 == 0 else None
    uom = UOMS[item % len(UOMS)]
    value = Decimal(rng.randrange(1, 500)) if uom != "ML" else Decimal(rng.randrange(1, 9999)) / 10
    return {
        "envelope": new_envelope(
            "StockMovement",
            source_system=("mmis", "erp-east", "pyxis")[i % 3],
            entity_id="ENT-1",
            facility_id=f"FAC-{loc % 2}",
            actor=f"user-{rng.randrange(200)}",
            priority="HIGH" if rng.random() < 0.02 else "ROUTINE",
        ),
        "movement_id": str(uuid.uuid4()),
        "kind": kind,
        "item_id": f"ITEM-{item:05d}",
        "location_id": f"LOC-{loc}",
        "lot_number": lot,
        "expiry_date": dt.date(2027, 1, 1) + dt.timedelta(days=item % 700) if lot else None,
        "quantity": {"value": value, "uom": uom},
        "counterpart_location_id": f"LOC-{(loc + 1) % LOCATIONS}" if "TRANSFER" in kind else None,
        "reference_id": f"WO-{i // 7:06d}",
        "reason": "cycle count" if kind == "ADJUSTMENT" else None,
    }


def stockout_risk(event: Event) -> Record:
    """A StockoutRisk caused by the movement (C: one outbox row per input event)."""
    r = event.record
    qty, key = r["quantity"], f"{r['item_id']}@{r['location_id']}"
    return {
        "envelope": caused_by(event.envelope, "StockoutRisk", emitter="bench", discriminator=key),
        "item_id": r["item_id"],
        "location_id": r["location_id"],
        "on_hand": {"value": qty["value"], "uom": qty["uom"]},
        "days_of_supply": Decimal("1.50"),
        "daily_usage": {"value": qty["value"], "uom": qty["uom"]},
        "level": "HIGH",
    }


def movements_with_risks(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    balances.apply_movements(events, conn)
    return [stockout_risk(e) for e in events]


RISKS = replace(balances.processor, name="bench-stock-risks", handle=movements_with_risks)


@dataclass
class Bench:
    """The private world of one bench run."""

    settings: Settings
    catalog: EventCatalog
    topic: str
    partitions: int
    tmp: Path
    emitted: int = 0  # outbox rows of the last stage

    @classmethod
    def create(cls, base: Settings, tmp: Path) -> Bench:
        tag = uuid.uuid4().hex[:8]
        own = replace(base, db_schema=f"bench_{tag}", group_prefix=f"bench-{tag}")
        settings = topic_admin.apply_private(own, tmp, f"b{tag}.")
        migrate.migrate(settings)
        register_items(settings, ((f"ITEM-{i:05d}", UOMS[i % len(UOMS)]) for i in range(ITEMS)))
        catalog = EventCatalog.from_settings(settings)
        spec = catalog.topics.topic_for("StockMovement")
        return cls(settings, catalog, spec.name, spec.partitions, tmp)

    def drop(self) -> None:
        schema = sql.Identifier(self.settings.db_schema)
        with connect(self.settings, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        admin = make_admin(self.settings)  # keep a reference until every future is done
        names = [t.name for t in self.catalog.topics.topics]
        for future in admin.delete_topics(names, operation_timeout=15).values():
            with contextlib.suppress(KafkaException):  # best effort: memory-only broker
                future.result(timeout=20)

    def load(self, n: int) -> tuple[float, float]:
        """Publish ``n`` movements; returns (prepare seconds, publish events/s)."""
        rng = random.Random(5)
        started = time.perf_counter()
        prepared = [self.catalog.prepare(movement(rng, i)) for i in range(n)]
        prepare_s = time.perf_counter() - started
        pub = Publisher.from_settings(self.settings)
        started = time.perf_counter()
        for out in prepared:
            pub.send(out)
        delivered = pub.flush(60)
        publish_rate = n / (time.perf_counter() - started)
        if delivered != n:
            raise BenchError(f"published {delivered} of {n} events")
        return prepare_s, publish_rate

    def ceiling(self, n: int) -> float:
        """A: consume(1000) + decode of every record, timed from the first batch to the n-th."""
        consumer = make_consumer(self.settings, f"{self.settings.group_prefix}.ceiling")
        parts = range(self.partitions)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in parts])
        decode = self.catalog.codec.decode
        seen, started = 0, 0.0
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        try:
            while seen < n:
                msgs = consumer.consume(BATCH, timeout=0.5)
                if msgs and not started:
                    started = time.perf_counter()
                for msg in msgs:
                    if msg.error() is None:
                        decode(msg.value())
                        seen += 1
                if time.monotonic() > deadline:
                    raise BenchError(f"consumer ceiling: {seen} of {n} read in time")
            return n / (time.perf_counter() - started)
        finally:
            consumer.close()  # assigned, never subscribed: no group to leave

    def pipeline(self, processor: Processor, n: int) -> float:
        """B / C: the runtime on the same events, from the lane's assignment to n ledger rows."""
        runner = Runner(  # B and C are two new processors of one event type (ADR 0007)
            self.settings, [processor], relay=False, until_idle=15.0, signals=False, new=True
        )
        thread = threading.Thread(target=runner.run, name="bench-runner", daemon=True)
        thread.start()
        deadline = time.monotonic() + STAGE_TIMEOUT_S
        try:
            while not any(ln.lane == "routine" and ln.stats.assigned for ln in runner.lanes):
                self._check(runner, thread, deadline, "group join")  # the routine lane has them
                time.sleep(0.001)
            assigned_at = time.monotonic()
            with connect(self.settings, autocommit=True) as conn:
                count = "SELECT count(*) FROM processed_events WHERE processor = %s"
                while True:
                    row = conn.execute(count, (processor.name,)).fetchone()
                    if row and row[0] >= n:
                        done_at = time.monotonic()
                        break
                    self._check(runner, thread, deadline, f"{row[0] if row else 0} of {n}")
                    time.sleep(POLL_S)
        finally:
            runner.stop.set()
            thread.join(20)
        self._verify(processor, n)
        return n / (done_at - assigned_at)

    @staticmethod
    def _check(runner: Runner, thread: threading.Thread, deadline: float, what: str) -> None:
        failed = [lane.error for lane in runner.lanes if lane.error is not None]
        if failed:
            raise BenchError(f"pipeline failed: {failed[0]!r}")
        if not thread.is_alive() or time.monotonic() > deadline:
            raise BenchError(f"pipeline stopped or timed out ({what})")

    def _verify(self, processor: Processor, n: int) -> None:
        with connect(self.settings, autocommit=True) as conn:
            row = conn.execute(  # an issue split across lots counts on each lot's balance
                "SELECT count(*) FROM processed_events WHERE processor = %s", (processor.name,)
            ).fetchone()
            if not row or row[0] != n:
                raise BenchError(f"{processor.name}: {row} events applied, not {n}")
            emitted = conn.execute(
                "SELECT count(*) FROM outbox WHERE source = %s", (processor.name,)
            ).fetchone()
            # the next stage starts from empty, too
            conn.execute("TRUNCATE stock_balances, stock_positions, stock_usage")
        self.emitted = int(emitted[0]) if emitted else 0
        if processor is RISKS and self.emitted != n:  # B emits StockoutRisk on level changes
            raise BenchError(f"{processor.name}: {self.emitted} outbox rows, expected {n}")


def run(n: int = EVENTS) -> Section:
    started = time.perf_counter()
    base = services.ensure_up(Settings.from_env())
    tmp = Path(tempfile.mkdtemp(prefix="supplybus-bench-"))
    try:
        bench = Bench.create(base, tmp)
        try:
            return _measure(bench, n, started)
        finally:
            bench.drop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(bench: Bench, n: int, started: float) -> Section:
    section = PipelineSection(
        f"processor pipeline (#5): {n:,} StockMovement, {bench.partitions} partitions, "
        f"{ITEMS:,} items x {LOCATIONS} locations, batch {BATCH}"
    )
    prepare_s, publish = bench.load(n)
    section.add(
        "load: Publisher.send (idempotent, acks=all)",
        publish,
        note=f"prepared in {prepare_s:.1f}s (validate + encode)",
    )
    ceilings = [bench.ceiling(n) for _ in range(3)]
    a = section.add(
        "A consumer ceiling: consume(1000) + decode",
        statistics.median(ceilings),
        note=f"baseline; median of 3 ({min(ceilings):,.0f}-{max(ceilings):,.0f})",
    )
    b = bench.pipeline(balances.processor, n)
    section.add(
        "B full pipeline: Runner + stock-balances",
        b,
        note=f"{ratio(b, a)} A (goal >= {RATIO_GOAL}x); {bench.emitted:,} StockoutRisk emitted",
    )
    c = bench.pipeline(RISKS, n)
    section.add("C pipeline + outbox (StockoutRisk/event)", c, note=f"{ratio(c, a)} A")
    peers: list[float] = []
    for mode, what in (("event", "per event"), ("take", f"take({TAKE}, within={WITHIN})")):
        group = f"{bench.settings.group_prefix}.faust-{mode}"
        try:
            d, first = faust_peer.measure(
                str(bench.settings.kafka_bootstrap_servers), bench.topic, n, mode, group, bench.tmp
            )
        except faust_peer.PeerError as exc:
            section.add(f"D faust agent, {what}", 0.0, note=f"FAILED: {exc}"[:100])
            continue
        peers.append(d)
        note = f"first event {first:.1f}s after start; B is {ratio(b, d)}"
        section.add(f"D faust agent, {what}", d, note=note)
    if peers:
        section.add(
            "B / best faust agent", b / max(peers), unit="x", note=f"goal >= {FAUST_GOAL:g}x"
        )
    section.add("B / A", b / a, unit="x", note=f"goal >= {RATIO_GOAL}x")
    section.footer = (
        "Figures vary 10-25 % run to run on this shared 2-core machine (broker, database and "
        f"bench on the same cores): compare ratios within one run. Section took "
        f"{time.perf_counter() - started:.0f}s."
    )
    return section
