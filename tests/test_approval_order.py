"""Acceptance 2 of issue 17 on the real database: redelivered and reordered approval events give
the final state of in-order delivery.

The approvals processor's batches go through the runtime's BatchApplier (ledger, handler,
outbox, audit in one transaction), fed with real Kafka messages: the bytes of the outbox rows
the requisitions processor wrote (RequisitionValidated) and of ApprovalGranted/Denied records
shaped like `supplybus approve`/`deny` writes them, decoded by the runtime's BatchDecoder. No
broker: order and batching are the schedule's. Each example gets a schema of its own, set up
by the masterdata and requisitions processors as they run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.approvals.processor import approvals
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.processor import Processor
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.ops import migrate
from tests.requisition_data import SAMPLE, TODAY, VALID, line, requisition

Record = dict[str, Any]
#: Who decides a step of each role (all valid in order: nobody decides two steps of a chain).
DECIDER = {
    "MANAGER": ("APR-EAST-MGR", None),
    "DIRECTOR": ("APR-EAST-DIR2", "APR-EAST-DIR"),  # the director is away: their delegate
    "VP": ("APR-EAST-VP", None),
    "FINANCE": ("APR-EAST-FIN", None),
    "SOURCING": ("APR-EAST-SRC", None),
}


@dataclass(frozen=True)
class Plan:
    """A requisition of about ``amount`` and its decisions in order (``deny_last``: the last
    step is denied)."""

    rid: str
    amount: Decimal
    steps: int  # on ENT-EAST's ladder: MANAGER from 2,500, DIRECTOR from 10,000
    deny_last: bool = False


#: Decisions come an hour apart after the requisitions are validated (at the clock's time).
DECIDED_FROM = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=5)

PLANS = (
    Plan("REQ-ORD-A", Decimal(12_000), 2),  # MANAGER, DIRECTOR (by the delegate)
    Plan("REQ-ORD-B", Decimal(3_000), 1),  # MANAGER
    Plan("REQ-ORD-C", Decimal(12_000), 2, deny_last=True),  # MANAGER, DIRECTOR denies
)
#: (requisition, index into its input events: 0 RequisitionValidated, n the step n decision)
Slot = tuple[str, int]


def _submitted(plan: Plan) -> Record:
    """A requisition of two lines at two suppliers, about ``plan.amount`` in all."""
    first = VALID[0]
    second = next(v for v in VALID if v[1].supplier_id != first[1].supplier_id)
    lines = [
        line(n, item, price, str(math.ceil(plan.amount / 2 / price.amount)))
        for n, (item, price) in enumerate((first, second), start=1)
    ]
    record = requisition(lines)
    record["requisition_id"] = plan.rid
    env = record["envelope"]
    env["event_id"] = deterministic_id("test-approval-order", plan.rid)
    env["correlation_id"] = plan.rid
    env["occurred_at"] = dt.datetime.combine(TODAY, dt.time(8), tzinfo=dt.UTC)
    return record


def _decision(plan: Plan, step: int, role: str, rule_id: str, denied: bool) -> Record:
    """The decision `supplybus approve`/`deny` would write for ``step`` (one hour per step)."""
    approver, principal = DECIDER[role]
    kind = "ApprovalDenied" if denied else "ApprovalGranted"
    record: Record = {
        "envelope": new_envelope(
            kind,
            source_system="supplybus.approvals.cli",
            entity_id="ENT-EAST",
            facility_id="FAC-E1",
            actor=approver,
            correlation_id=plan.rid,
            causation_id=deterministic_id("test-approval-order", plan.rid),
            occurred_at=DECIDED_FROM + dt.timedelta(hours=step),
            event_id=deterministic_id(plan.rid, kind, f"{step}/{approver}"),
        ),
        "requisition_id": plan.rid,
        "step": step,
        "approver_id": approver,
        "rule_ids": [rule_id],
    }
    if denied:
        record["reason"] = "not this quarter"
    else:
        record["on_behalf_of"], record["comment"] = principal, "ok"
    return record


@dataclass(frozen=True)
class Input:
    """An input event of the approvals processor: its id and its Kafka message."""

    event_id: str
    message: Message


class Bus:
    """One schema's processors fed through the runtime's decoder and batch applier."""

    def __init__(self, base: Settings) -> None:
        self.settings = replace(base, db_schema=f"t_{uuid.uuid4().hex[:12]}")
        migrate.migrate(self.settings)
        self.catalog = EventCatalog.from_settings(self.settings)
        self.offset = itertools.count()
        self.appliers: dict[str, tuple[BatchApplier, BatchDecoder]] = {}

    def message(self, record: Record) -> Message:
        """A Kafka message with the bytes a producer would write for ``record``."""
        out = self.catalog.prepare(record, check="domain")
        return self._message(out.topic, out.key, out.value)

    def _message(self, topic: str, key: bytes | None, value: bytes) -> Message:
        n = next(self.offset)
        return Message(
            topic=topic, partition=0, offset=n, key=key, value=value,
            timestamp=(1, 1_700_000_000_000 + n),
        )  # fmt: skip

    def apply(
        self, conn: psycopg.Connection, processor: Processor, msgs: Sequence[Message]
    ) -> None:
        """One batch, committed; nothing may fail to decode or be dead-lettered."""
        if processor.name not in self.appliers:
            self.appliers[processor.name] = (
                BatchApplier(processor, self.catalog, lambda t: f"{t}.dlq"),
                BatchDecoder(self.catalog, processor.consumes),
            )
        applier, decode = self.appliers[processor.name]
        batch = decode(msgs)
        assert not batch.failures, batch.failures
        outcome = applier.apply(conn, batch.events, [])
        conn.commit()
        assert not outcome.dead, [(f.event_id, f.error) for f in outcome.dead]

    def input(self, record: Record) -> Input:
        return Input(str(record["envelope"]["event_id"]), self.message(record))

    def validated(self, conn: psycopg.Connection) -> dict[str, Input]:
        """The RequisitionValidated the requisitions processor wrote, as the relay sends them."""
        rows = conn.execute(
            "SELECT correlation_id, event_id::text, topic, key, value FROM outbox"
            " WHERE event_type = 'RequisitionValidated' ORDER BY id"
        ).fetchall()
        return {
            rid: Input(event_id, self._message(topic, bytes(key), bytes(value)))
            for rid, event_id, topic, key, value in rows
        }


def _prepared(base: Settings) -> tuple[Bus, dict[str, list[Input]]]:
    """A schema of its own with the sample master data and the plans' requisitions validated
    and routed by their processors; each requisition's input events for the approvals
    processor, in order (RequisitionValidated, then one decision per step)."""
    bus = Bus(base)
    with connect(bus.settings) as conn:
        bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
        bus.apply(conn, requisitions(), [bus.message(_submitted(p)) for p in PLANS])
        validated = bus.validated(conn)
        routes = dict(
            conn.execute(
                "SELECT requisition_id, route FROM requisitions WHERE requisition_id = ANY(%s)",
                ([p.rid for p in PLANS],),
            ).fetchall()
        )
    inputs: dict[str, list[Input]] = {}
    for plan in PLANS:
        steps = routes[plan.rid]["steps"]
        assert len(steps) == plan.steps, (plan.rid, [s["role"] for s in steps])
        decisions = [
            _decision(plan, n, s["role"], s["rule"], plan.deny_last and n == len(steps))
            for n, s in enumerate(steps, start=1)
        ]
        inputs[plan.rid] = [validated[plan.rid], *(bus.input(d) for d in decisions)]
    return bus, inputs


def _state(conn: psycopg.Connection) -> dict[str, Any]:
    """What delivery order must not change: the chains, the requisitions' status, the events
    emitted, the audit trail per requisition (a multiset) and what the ledger applied."""
    rids = [p.rid for p in PLANS]
    steps = conn.execute(
        "SELECT requisition_id, step, role, roles, status, decided_by, on_behalf_of, decided_at,"
        " requested_at, due_at, escalations, comment FROM approval_steps"
        " WHERE requisition_id = ANY(%s) ORDER BY requisition_id, step",
        (rids,),
    ).fetchall()
    status = conn.execute(
        "SELECT requisition_id, status FROM requisitions WHERE requisition_id = ANY(%s)"
        " ORDER BY requisition_id",
        (rids,),
    ).fetchall()
    emitted = Counter(
        conn.execute(
            "SELECT event_type, event_id::text, causation_id FROM outbox WHERE source = 'approvals'"
        ).fetchall()
    )
    trail = {
        rid: Counter(
            conn.execute(
                "SELECT action, actor, event_id::text, reason, detail::text FROM audit_log"
                " WHERE entity_type = 'requisition' AND entity_id = %s",
                (rid,),
            ).fetchall()
        )
        for rid in rids
    }
    applied = sorted(
        r[0]
        for r in conn.execute(
            "SELECT event_id::text FROM processed_events WHERE processor = 'approvals'"
        ).fetchall()
    )
    inbox = conn.execute("SELECT count(*) FROM approval_inbox").fetchone()
    return {
        "steps": steps, "status": status, "emitted": emitted, "trail": trail,
        "applied": applied, "inbox": inbox,
    }  # fmt: skip


@pytest.fixture(scope="module")
def base(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """Settings on the session's database (no broker is used: the schedule is the order)."""
    return Settings(
        home=tmp_path_factory.mktemp("approval-order"),
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        connect_timeout_s=10.0,
    )


@dataclass(frozen=True)
class Reference:
    """The input events per requisition, in order, and the final state of delivering them
    in order, once each, one event per batch."""

    inputs: dict[str, list[Input]]
    state: dict[str, Any]


@pytest.fixture(scope="module")
def reference(base: Settings) -> Reference:
    bus, inputs = _prepared(base)
    with connect(bus.settings) as conn:
        processor = approvals()
        for rid in sorted(inputs):
            for i in inputs[rid]:
                bus.apply(conn, processor, [i.message])
        return Reference(inputs, _state(conn))


def _deliver(base: Settings, ref: Reference, batches: list[list[Message]]) -> dict[str, Any]:
    """The final state after ``batches`` in a schema of their own (the same requisitions,
    validated and routed there by the same processors)."""
    bus = Bus(base)
    with connect(bus.settings) as conn:
        bus.apply(conn, masterdata, [bus.message(r) for r in SAMPLE])
        bus.apply(conn, requisitions(), [bus.message(_submitted(p)) for p in PLANS])
        processor = approvals()
        for batch in batches:
            bus.apply(conn, processor, batch)
        return _state(conn)


def test_in_order_delivery_decides_every_chain(reference: Reference) -> None:
    """The reference itself: A approved (the director's step by their delegate), B approved,
    C denied at the director's step; every event applied once; nothing left in the inbox."""
    state = reference.state
    assert state["status"] == [
        ("REQ-ORD-A", "APPROVED"), ("REQ-ORD-B", "APPROVED"), ("REQ-ORD-C", "DENIED"),
    ]  # fmt: skip
    assert [(s[0], s[1], s[2], s[4], s[5], s[6]) for s in state["steps"]] == [
        ("REQ-ORD-A", 1, "MANAGER", "GRANTED", "APR-EAST-MGR", None),
        ("REQ-ORD-A", 2, "DIRECTOR", "GRANTED", "APR-EAST-DIR2", "APR-EAST-DIR"),
        ("REQ-ORD-B", 1, "MANAGER", "GRANTED", "APR-EAST-MGR", None),
        ("REQ-ORD-C", 1, "MANAGER", "GRANTED", "APR-EAST-MGR", None),
        ("REQ-ORD-C", 2, "DIRECTOR", "DENIED", "APR-EAST-DIR2", None),
    ]
    kinds = Counter(kind for kind, _, _ in state["emitted"].elements())
    assert kinds == {"ApprovalRequested": 5, "RequisitionApproved": 2}
    assert max(state["emitted"].values()) == 1, "an event emitted twice"
    actions = {
        rid: sorted(a for a, *_ in trail.elements()) for rid, trail in state["trail"].items()
    }
    assert actions == {
        "REQ-ORD-A": sorted(
            ["validated", "requested", "granted", "requested", "granted", "approved"]
        ),
        "REQ-ORD-B": sorted(["validated", "requested", "granted", "approved"]),
        "REQ-ORD-C": sorted(["validated", "requested", "granted", "requested", "denied"]),
    }
    every = sorted(i.event_id for inputs in reference.inputs.values() for i in inputs)
    assert state["applied"] == every and state["inbox"] == (0,)


def _with_duplicates(draw: st.DrawFn, slots: list[Slot], *, anywhere: bool) -> list[Slot]:
    """Up to four events delivered again: later than their first delivery (a redelivery
    from an earlier offset), or ``anywhere``."""
    out = list(slots)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(out) - 1))
        out.insert(draw(st.integers(0 if anywhere else i + 1, len(out))), out[i])
    return out


def _batches(draw: st.DrawFn, slots: list[Slot]) -> list[list[Slot]]:
    cuts = sorted(draw(st.sets(st.integers(1, len(slots) - 1), max_size=len(slots))))
    return [slots[a:b] for a, b in itertools.pairwise([0, *cuts, len(slots)])]


@st.composite
def keyed_schedules(draw: st.DrawFn) -> list[list[Slot]]:
    """The requisitions interleaved, each one's events in order, some delivered again,
    split into batches."""
    tokens = [p.rid for p in PLANS for _ in range(p.steps + 1)]
    seen: Counter[str] = Counter()
    slots: list[Slot] = []
    for rid in draw(st.permutations(tokens)):
        slots.append((rid, seen[rid]))
        seen[rid] += 1
    return _batches(draw, _with_duplicates(draw, slots, anywhere=False))


@st.composite
def unordered_schedules(draw: st.DrawFn) -> list[list[Slot]]:
    """Any order at all (a decision before its requisition is validated, step 2 before step
    1), some events delivered again, split into batches."""
    every = [(p.rid, n) for p in PLANS for n in range(p.steps + 1)]
    slots = list(draw(st.permutations(every)))
    return _batches(draw, _with_duplicates(draw, slots, anywhere=True))


def _check(base: Settings, ref: Reference, schedule: list[list[Slot]]) -> None:
    batches = [[ref.inputs[rid][n].message for rid, n in batch] for batch in schedule]
    got = _deliver(base, ref, batches)
    for part in ("status", "steps", "emitted", "trail", "applied", "inbox"):
        assert got[part] == ref.state[part], f"{part} differs from in-order delivery"


#: Every event, in order per requisition, one requisition after the other.
IN_ORDER = [(p.rid, n) for p in PLANS for n in range(p.steps + 1)]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keyed_schedules())
@example([IN_ORDER + IN_ORDER])  # everything twice in one batch
@example([[s] for s in IN_ORDER] + [IN_ORDER])  # one by one, then all again
def test_redelivery_and_interleaving_in_key_order_change_nothing(
    base: Settings, reference: Reference, schedule: list[list[Slot]]
) -> None:
    """(a) Per-key order kept, requisitions interleaved, duplicates (the ledger skips them),
    any batching: the final state of in-order delivery."""
    _check(base, reference, schedule)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(unordered_schedules())
@example([[s] for s in reversed(IN_ORDER)])  # last decision first, validated last
@example([list(reversed(IN_ORDER))])  # the same in one batch
def test_any_order_of_arrival_ends_in_the_in_order_state(
    base: Settings, reference: Reference, schedule: list[list[Slot]]
) -> None:
    """(b) No order kept: decisions that arrive before their step is open wait in
    approval_inbox and are applied when it opens; the final state is that of in-order
    delivery, and the inbox is empty."""
    _check(base, reference, schedule)


def test_a_decision_parked_for_a_step_that_never_opens_is_recorded(
    base: Settings, reference: Reference
) -> None:
    """Requisition A: step 2's grant arrives before step 1's denial. In order, the grant comes
    after the denial and is refused (an audit entry); out of order it waits for step 2, which
    never opens: it must not stay in the inbox unrecorded."""
    plan = PLANS[0]
    validated, _, grant_2 = (i.message for i in reference.inputs[plan.rid])
    deny = _decision(plan, 1, "MANAGER", "EAST-BAND-MANAGER", denied=True)
    deny_1 = Bus(base).message(deny)
    in_order = _deliver(base, reference, [[validated], [deny_1], [grant_2]])
    reordered = _deliver(base, reference, [[validated], [grant_2], [deny_1]])
    assert in_order["inbox"] == (0,)
    assert sorted(a for a, *_ in in_order["trail"][plan.rid].elements()) == sorted(
        ["validated", "requested", "denied", "refused"]
    )
    assert reordered["inbox"] == in_order["inbox"], "a decision left in approval_inbox"
    assert reordered["trail"] == in_order["trail"]
