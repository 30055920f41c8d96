"""Fuzzing whole Kafka messages (key, value, headers) against a running processor on the real
broker and database: every record ends applied (or skipped as a duplicate of an applied
event) or dead-lettered, every offset is committed, and the lane never stops for a record.

The dead-letter budget is raised out of the way here (10,000 in a row) so that every record
is judged on its own; the budget itself is tested in test_failure_paths.py.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplybus.adapters.kafka import make_producer
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.inventory.balances import processor as stock_balances
from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.runner import Runner
from supplybus.errors import SupplybusError
from supplybus.events.catalog import EventCatalog
from tests import flood
from tests.workers import fresh_group

NO_BUDGET = DeadLetterBudget(max_consecutive=10_000, max_in_window=10_000, window=10_000)
_VALID = [EventCatalog.from_settings(Settings()).prepare(r).value for r in flood.load("fz", 3, 4)]

headers = st.lists(
    st.tuples(
        st.text(max_size=12),
        st.none() | st.binary(max_size=40) | st.just(b"\xff\xfe\x00"),
    ),
    max_size=4,
)


@st.composite
def values(draw: st.DrawFn) -> bytes | None:
    base = draw(st.sampled_from(_VALID))
    kind = draw(st.sampled_from(["valid", "flip", "truncate", "extend", "random", "none"]))
    if kind == "valid":
        return base
    if kind == "flip":
        at = draw(st.integers(0, len(base) - 1))
        return base[:at] + bytes([base[at] ^ draw(st.integers(1, 255))]) + base[at + 1 :]
    if kind == "truncate":
        return base[: draw(st.integers(0, len(base) - 1))]
    if kind == "extend":
        return base + draw(st.binary(min_size=1, max_size=20))
    if kind == "random":
        return draw(st.binary(max_size=300))
    return None


messages = st.lists(
    st.tuples(st.none() | st.binary(max_size=20) | st.just(b"k" * 9000), values(), headers),
    min_size=1,
    max_size=40,
)


@settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batch=messages)
def test_every_fuzzed_message_ends_applied_or_dead_lettered(
    isolated: Settings, batch: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]
) -> None:
    settings_ = fresh_group(isolated)
    catalog = EventCatalog.from_settings(settings_)
    topic = f"{catalog.topics.topic_for('StockMovement').name}"
    processor = replace(  # each record judged on its own: none held behind a dead letter
        stock_balances,
        name=f"fuzz-{uuid.uuid4().hex[:8]}",
        dead_letter_budget=NO_BUDGET,
        on_dead_letter="continue",
    )
    producer = make_producer(settings_)
    delivered: list[int] = []
    for key, value, hdrs in batch:
        producer.produce(
            topic,
            value,
            key,
            partition=0,
            headers=hdrs,
            on_delivery=lambda err, msg: delivered.append(msg.offset()),
        )
    assert producer.flush(15) == 0
    offsets = sorted(delivered)
    # each example is a new processor on the same schema and event types: new=True (ADR 0007)
    runner = Runner(settings_, [processor], until_idle=1.5, signals=False, new=True)
    assert runner.run() == 0, [lane.error for lane in runner.lanes]
    with connect(settings_) as conn:
        applied = dict(
            conn.execute(
                'SELECT "offset", event_id::text FROM processed_events'
                " WHERE processor = %s AND partition = 0",
                (processor.name,),
            ).fetchall()
        )
        dead = {
            r[0]
            for r in conn.execute(
                'SELECT "offset" FROM dead_letters WHERE processor = %s AND partition = 0',
                (processor.name,),
            ).fetchall()
        }
    applied_ids = set(applied.values())
    for offset, (_, value, _) in zip(offsets, batch, strict=True):
        if offset in applied or offset in dead:
            continue
        try:  # not applied and not dead: only a duplicate of an applied event may be that
            event_id = str(uuid.UUID(catalog.codec.decode(value).envelope["event_id"]))
        except (SupplybusError, ValueError, KeyError):
            event_id = None
        assert event_id in applied_ids, f"offset {offset} neither applied nor dead-lettered"
    assert not (set(applied) & dead), "a record both applied and dead-lettered"
