"""Requisition to purchase order latency (issue 17, acceptance 5).

Auto-approved requisitions (ENT-EAST, totals far below its 2,500 USD auto-approval limit) are
published at a steady rate (50/s for 30 s; ``SUPPLYBUS_BENCH_REQ_RATE`` and
``SUPPLYBUS_BENCH_REQ_SECONDS`` change it) while ``requisitions``, ``approvals``,
``purchase-orders`` and the outbox relay run in one ``Runner`` in a background thread, as
``supplybus run requisitions approvals purchase-orders relay`` would, with the shipped defaults.

Per requisition, measured in the database: start = the RequisitionSubmitted's ``occurred_at``
(stamped just before the publish call, ``requisitions.submitted_at``), end = the newest
``purchase_orders.issued_at`` of its POs (the PurchaseOrderIssued's ``occurred_at``: when the
purchase-orders handler issued it, inside the transaction that then commits it). Publishing
starts only once every lane holds its partitions and one warm-up requisition has gone through
the whole chain, so neither the group join nor the first connections are measured.
Everything lives in a private topic catalog, schema and group prefix, dropped at the end.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.masterdata.sample import sample_masterdata
from supplybus.consumers.procurement.orders import processor as purchase_orders
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import ConfigError
from supplybus.events.envelope import new_envelope, utcnow
from supplybus.ops import services
from supplybus.ops.bench.pipeline import Bench, BenchError, PipelineSection
from supplybus.ops.bench.report import Section
from supplybus.producers.publisher import Publisher

Record = dict[str, Any]

RATE, SECONDS = 50.0, 30.0
RATE_ENV, SECONDS_ENV = "SUPPLYBUS_BENCH_REQ_RATE", "SUPPLYBUS_BENCH_REQ_SECONDS"
GOAL_P99_S = 2.0
ENTITY = "ENT-EAST"
#: ENT-EAST cost centers with an open budget and no grant (grant-funded adds an approval step).
CENTERS = (("CC-E1-SURG", "FAC-E1"), ("CC-E1-PHARM", "FAC-E1"), ("CC-E2-SURG", "FAC-E2"),
           ("CC-E2-PHARM", "FAC-E2"))  # fmt: skip
#: Item categories no policy routes (implants, controlled substances, capital have steps).
CATEGORIES = frozenset({"MED_SURG", "LAB", "PHARMACY"})
#: Most a line may cost: at most 3 lines, so a requisition stays far below 2,500 USD and 30 s
#: at 50/s stays inside every cost center's budget even once committed spend counts.
LINE_LIMIT = Decimal(150)
JOIN_TIMEOUT_S = 60.0
POLL_S = 0.25
NOT_AUTO_APPROVED = ("REJECTED", "DENIED", "PENDING_APPROVAL")


@dataclass
class LatencySection(PipelineSection):
    """A section of counts and latencies: a "value" column, whole numbers where they are."""

    def print(self, console: Console) -> None:
        table = Table("measure", "value", "unit", "note", title=self.title, title_justify="left")
        for what, value, unit, note in self.rows:
            shown = f"{value:,.2f}" if unit == "s" else f"{value:,.0f}"
            table.add_row(what, shown, unit, note)
        console.print(table)
        if self.footer:
            console.print(self.footer)


@dataclass(frozen=True)
class Offer:
    """An item a requisition of ENT-EAST may name at its contract price, auto-approvable."""

    item_id: str
    supplier_id: str
    uom: str
    price: Decimal


def offers(sample: Sequence[Mapping[str, Any]], day: dt.date) -> list[Offer]:
    """The sample's contract prices that validate without a flag or an approval step: an
    orderable item of an unrouted category, an active supplier selling to ENT-EAST, a price
    valid on ``day`` and at most ``LINE_LIMIT``."""
    sellers = {
        r["supplier_id"]
        for r in sample
        if r["envelope"]["event_type"] == "SupplierUpserted"
        and r["status"] == "ACTIVE"
        and ENTITY in r["entity_ids"]
    }
    found = [
        Offer(item["item_id"], p["supplier_id"], p["uom"], p["price"]["amount"])
        for item in sample
        if item["envelope"]["event_type"] == "ItemUpserted"
        and item["orderable"]
        and item["category"] in CATEGORIES
        for p in item["contract_prices"]
        if p["supplier_id"] in sellers
        and p["price"]["currency"] == "USD"
        and p["price"]["amount"] <= LINE_LIMIT
        and p["valid_from"] <= day
        and (p["valid_to"] is None or day <= p["valid_to"])
    ]
    return sorted(found, key=lambda o: (o.item_id, o.supplier_id, o.uom))


def requisition(rid: str, chosen: Sequence[Offer], center: str, facility: str) -> Record:
    """A RequisitionSubmitted of one line per offer, at the contract price, each line at most
    ``LINE_LIMIT``; its envelope is stamped now (the latency's start)."""
    lines: list[Record] = []
    for n, offer in enumerate(chosen, start=1):
        quantity = Decimal(max(1, min(4, int(LINE_LIMIT // offer.price))))
        lines.append({
            "line_number": n, "item_id": offer.item_id, "supplier_id": offer.supplier_id,
            "description": None, "quantity": {"value": quantity, "uom": offer.uom},
            "unit_price": {"amount": offer.price, "currency": "USD"},
            "cost_center_id": None, "need_by": None,
        })  # fmt: skip
    total = sum((ln["quantity"]["value"] * ln["unit_price"]["amount"] for ln in lines), Decimal(0))
    envelope = new_envelope(
        "RequisitionSubmitted",
        source_system="bench",
        entity_id=ENTITY,
        facility_id=facility,
        actor="bench",
        correlation_id=rid,
    )
    return {
        "envelope": envelope,
        "requisition_id": rid,
        "requester_id": "U-BENCH",
        "cost_center_id": center,
        "urgency": "ROUTINE",
        "need_by": envelope["occurred_at"].date() + dt.timedelta(days=7),
        "justification": None,
        "grant_funded": False,
        "lines": lines,
        "total": {"amount": total, "currency": "USD"},
    }


def draw(rng: random.Random, choices: Sequence[Offer], rid: str) -> Record:
    """A requisition of 1-3 distinct offers for a random cost center of ``CENTERS``."""
    center, facility = rng.choice(CENTERS)
    chosen = rng.sample(list(choices), min(len(choices), rng.randint(1, 3)))
    return requisition(rid, chosen, center, facility)


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of a non-empty sample."""
    if not values or not 0 < q <= 100:
        raise ValueError(f"percentile needs values and 0 < q <= 100, got {len(values)}, {q}")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number > 0, got {raw!r}") from None
    if not 0 < value < math.inf:
        raise ConfigError(f"{name}: expected a number > 0, got {raw!r}")
    return value


HOPS = (
    "submitted -> requisitions tx",
    "RequisitionValidated -> approvals tx",
    "RequisitionApproved -> PO issued",
)
_TIMINGS = """
WITH po AS (
    SELECT requisition_id, max(issued_at) AS at, count(*) AS n FROM purchase_orders
    WHERE requisition_id = ANY(%(ids)s) GROUP BY requisition_id
), emitted AS (
    SELECT correlation_id, event_type, min(created_at) AS at FROM outbox
    WHERE correlation_id = ANY(%(ids)s)
      AND event_type IN ('RequisitionValidated', 'RequisitionApproved')
    GROUP BY correlation_id, event_type
)
SELECT extract(epoch FROM po.at - r.submitted_at) * 1000,
       extract(epoch FROM v.at - r.submitted_at) * 1000,
       extract(epoch FROM a.at - v.at) * 1000,
       extract(epoch FROM po.at - a.at) * 1000,
       po.n
FROM requisitions r
JOIN po USING (requisition_id)
JOIN emitted v ON v.correlation_id = r.requisition_id AND v.event_type = 'RequisitionValidated'
JOIN emitted a ON a.correlation_id = r.requisition_id AND a.event_type = 'RequisitionApproved'
WHERE r.requisition_id = ANY(%(ids)s)
"""


@dataclass
class Timings:
    """Milliseconds per requisition: submitted -> last PO issued, and per hop; PO count."""

    total: list[float] = field(default_factory=list)
    hops: dict[str, list[float]] = field(default_factory=lambda: {hop: [] for hop in HOPS})
    orders: int = 0


@dataclass
class Load:
    """What the publisher did: requisition ids, when each was published (monotonic seconds),
    and how many purchase orders they should become (one per supplier)."""

    ids: list[str]
    times: list[float]
    orders: int

    @property
    def rate(self) -> float:
        span = self.times[-1] - self.times[0] if self.times else 0.0
        return (len(self.times) - 1) / span if span > 0 else 0.0


class Chain:
    """The three processors and the relay in a background thread, and the load they get."""

    def __init__(self, bench: Bench, sample: Sequence[Record], seed: int = 17) -> None:
        self.bench, self.settings = bench, bench.settings
        self.offers = offers(sample, utcnow().date())
        if not self.offers:
            raise BenchError("the sample master data has no auto-approvable contract price")
        self.rng = random.Random(seed)
        self.tag = uuid.uuid4().hex[:6].upper()
        chain = [requisitions(), approvals(), purchase_orders()]
        self.runner = Runner(self.settings, chain, relay=True, signals=False)
        self.thread = threading.Thread(target=self.runner.run, name="bench-chain", daemon=True)

    def next_requisition(self, n: int) -> Record:
        return draw(self.rng, self.offers, f"REQ-BENCH-{self.tag}-{n:06d}")

    def start(self) -> None:
        """Start the runner; return once every lane holds its partitions."""
        self.thread.start()
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not (self.runner.lanes and all(ln.stats.assigned for ln in self.runner.lanes)):
            self.check(deadline, "group join")
            time.sleep(0.01)

    def stop(self) -> None:
        self.runner.stop.set()
        self.thread.join(20)

    def check(self, deadline: float, what: str) -> None:
        failed = [lane.error for lane in self.runner.lanes if lane.error is not None]
        relay = self.runner.relay_worker
        if relay is not None and relay.error is not None:
            failed.append(relay.error)
        if failed:
            raise BenchError(f"requisition chain failed: {failed[0]!r}")
        if not self.thread.is_alive() or time.monotonic() > deadline:
            raise BenchError(f"requisition chain stopped or timed out ({what})")

    def publish(self, rate: float, seconds: float, first: int = 0) -> Load:
        """``rate`` requisitions a second for ``seconds``, each at its scheduled time (a late
        one is not made up by a burst; its latency starts when it is really published)."""
        count = max(1, round(rate * seconds))
        load = Load([], [], 0)
        with Publisher.from_settings(self.settings) as pub:
            started = time.monotonic()
            for i in range(count):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                record = self.next_requisition(first + i)
                record["envelope"]["occurred_at"] = utcnow()  # the latency starts here
                load.times.append(time.monotonic())
                pub.publish(record)
                pub.producer.poll(0)  # serve delivery reports as they come
                load.ids.append(record["requisition_id"])
                load.orders += len({ln["supplier_id"] for ln in record["lines"]})
        self.check(math.inf, "while publishing")
        return load

    def wait_ordered(self, ids: Sequence[str], timeout_s: float) -> None:
        """Until every requisition is ORDERED; fails naming what is stuck where."""
        deadline = time.monotonic() + timeout_s
        with connect(self.settings, autocommit=True) as conn:
            while True:
                rows = conn.execute(
                    "SELECT status, count(*) FROM requisitions WHERE requisition_id = ANY(%s)"
                    " GROUP BY status",
                    (list(ids),),
                ).fetchall()
                by_status = {str(s): int(n) for s, n in rows}
                if by_status.get("ORDERED", 0) == len(ids):
                    return
                wrong = {s: n for s, n in by_status.items() if s in NOT_AUTO_APPROVED}
                if wrong:
                    raise BenchError(f"requisitions not auto-approved: {wrong}")
                seen = sum(by_status.values())
                self.check(deadline, f"{len(ids) - seen} of {len(ids)} not validated, {by_status}")
                time.sleep(POLL_S)

    def timings(self, ids: Sequence[str]) -> Timings:
        """Per requisition: the whole latency and its three hops (a hop ends when the next
        processor's transaction starts, the outbox row's ``created_at``), and its PO count."""
        with connect(self.settings, autocommit=True) as conn:
            rows = conn.execute(_TIMINGS, {"ids": list(ids)}).fetchall()
        if len(rows) != len(ids):
            raise BenchError(f"{len(rows)} of {len(ids)} requisitions have purchase orders")
        found = Timings()
        for total, validated, approved, issued, orders in rows:
            found.total.append(float(total))
            for hop, ms in zip(HOPS, (validated, approved, issued), strict=True):
                found.hops[hop].append(float(ms))
            found.orders += int(orders)
        return found


def load_masterdata(settings: Settings, sample: Sequence[Record]) -> None:
    """Publish the sample master data and apply it with the masterdata processor."""
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(sample)
    runner = Runner(
        settings, [masterdata], until_idle=1.0, signals=False, assignment_timeout=JOIN_TIMEOUT_S
    )
    if runner.run() != 0:
        raise BenchError("the masterdata processor failed to load the sample")


def run(
    rate: float | None = None, seconds: float | None = None, base: Settings | None = None
) -> Section:
    """The section: ``rate``/s for ``seconds`` (default: the environment, else 50/s, 30 s)."""
    rate = rate or _env_number(RATE_ENV, RATE)
    seconds = seconds or _env_number(SECONDS_ENV, SECONDS)
    started = time.perf_counter()
    resolved = services.ensure_up(base or Settings.from_env())
    tmp = Path(tempfile.mkdtemp(prefix="supplybus-bench-req-"))
    try:
        bench = Bench.create(resolved, tmp)
        try:
            return _measure(bench, rate, seconds, started)
        finally:
            bench.drop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _measure(bench: Bench, rate: float, seconds: float, started: float) -> Section:
    sample = sample_masterdata(0, utcnow().date())
    load_masterdata(bench.settings, sample)
    chain = Chain(bench, sample)
    try:
        chain.start()
        warm = chain.publish(1.0, 1.0, first=0)  # connections, caches: not measured
        chain.wait_ordered(warm.ids, JOIN_TIMEOUT_S)
        load = chain.publish(rate, seconds, first=1)
        drain_started = time.monotonic()
        chain.wait_ordered(load.ids, max(60.0, seconds))
        drained_s = time.monotonic() - drain_started
        timings = chain.timings(load.ids)
        if timings.orders != load.orders:
            raise BenchError(f"{timings.orders} purchase orders issued, expected {load.orders}")
    finally:
        chain.stop()
    return _report(load, timings, rate, seconds, drained_s, started)


def _report(
    load: Load, timings: Timings, rate: float, seconds: float, drained_s: float, started: float
) -> Section:
    section = LatencySection(
        f"requisition to PO issued (#17): auto-approved requisitions at {rate:g}/s for "
        f"{seconds:g}s; requisitions -> approvals -> purchase-orders + relay, one Runner"
    )
    n, ms = len(load.ids), timings.total
    section.add(
        "requisitions published",
        n,
        "requisitions",
        f"achieved {load.rate:.1f}/s (target {rate:g}/s)",
    )
    section.add(
        "requisitions ORDERED (PO issued)",
        len(ms),
        "requisitions",
        f"all {n:,}; {timings.orders:,} purchase orders (one per supplier), as expected",
    )
    for q in (50, 90, 99):
        section.add(f"latency p{q}", percentile(ms, q), "ms", "submitted -> PO issued")
    section.add("latency max", max(ms), "ms", "submitted -> PO issued")
    for hop, values in timings.hops.items():
        p50, p99 = percentile(values, 50), percentile(values, 99)
        section.add(f"  hop p50: {hop}", p50, "ms", f"p99 {p99:,.0f} ms")
    p99 = percentile(ms, 99)
    verdict = "met" if p99 < GOAL_P99_S * 1000 else "NOT met"
    section.add(f"goal p99 < {GOAL_P99_S:g} s", p99 / 1000, "s", verdict)
    section.footer = (
        "Shipped defaults, nothing tuned: a lane's consume(batch, timeout=0.2 s) waits out its "
        "timeout below a full batch, the relay polls the outbox every 50 ms when idle, producer "
        "linger 5 ms; broker, database, processors and publisher share 2 cores. Last PO "
        f"{drained_s:.1f}s after the last publish; section took "
        f"{time.perf_counter() - started:.0f}s."
    )
    return section
