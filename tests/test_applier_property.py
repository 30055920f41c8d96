"""Property: whatever the batching, re-delivery and poison records, every event's effect is
applied exactly once, in order per key (the batch applier on the real database, no broker)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.processor import Event
from supplybus.events.catalog import EventCatalog
from tests import flood
from tests.processors import keyed_sums, setup

KEYS, PER_KEY = 4, 6
TOPIC = "inventory.stock-movements.v1"


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[int]], set[int]]:
    """Batches of indexes into the event list: in order, with earlier ranges delivered again
    (a crash before the offset commit), and some indexes that are poison."""
    total = KEYS * PER_KEY
    cuts = sorted(draw(st.sets(st.integers(1, total - 1), max_size=8)))
    bounds = [0, *cuts, total]
    batches: list[list[int]] = []
    for start, end in itertools.pairwise(bounds):
        batches.append(list(range(start, end)))
        if draw(st.booleans()):  # re-delivery from an earlier point
            back = draw(st.integers(0, start))
            batches.append(list(range(back, end)))
    poison = draw(st.sets(st.integers(0, total - 1), max_size=3))
    return batches, poison


@pytest.fixture(scope="module")
def db(
    kafka_bootstrap: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    from supplybus.ops import migrate

    s = Settings(
        home=tmp_path_factory.mktemp("prop"),
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        db_schema="t_applier_property",
    )
    migrate.migrate(s)
    with connect(s) as conn:
        setup(conn)
    return s


def _events(poison: set[int]) -> list[Event]:
    records = flood.load("prop", keys=KEYS, per_key=PER_KEY)
    out = []
    for i, record in enumerate(records):
        if i in poison:
            record = {**record, "reason": "reject"}
        out.append(Event("StockMovement", record, TOPIC, i % 3, i, None))
    return out


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries())
def test_any_delivery_schedule_applies_each_event_once(
    db: Settings, schedule: tuple[list[list[int]], set[int]]
) -> None:
    batches, poison = schedule
    with connect(db) as conn:
        conn.execute("TRUNCATE applied_effects, processed_events, dead_letters, outbox")
        conn.commit()
        applier = BatchApplier(keyed_sums(), EventCatalog.from_settings(db), lambda t: f"{t}.dlq")
        events = _events(poison)
        for batch in batches:
            applier.apply(conn, [events[i] for i in batch], [])
        dead = conn.execute('SELECT "offset", attempts FROM dead_letters ORDER BY 1').fetchall()
    skip = {(events[i].record["item_id"], int(events[i].record["reference_id"])) for i in poison}
    flood.check_exactly_once(db, keys=KEYS, per_key=PER_KEY, skip=skip)
    assert [d[0] for d in dead] == sorted(poison)
    deliveries_of: dict[int, int] = {}
    for batch in batches:
        for i in batch:
            deliveries_of[i] = deliveries_of.get(i, 0) + 1
    assert {d[0]: d[1] for d in dead} == {i: deliveries_of[i] for i in poison}


def test_per_event_adapts_a_single_event_handler() -> None:
    from supplybus.consumers.runtime.processor import per_event

    seen: list[int] = []

    def handler(event: Event, conn: object) -> list[dict[str, int]]:
        seen.append(event.offset)
        return [{"n": event.offset}] * (event.offset % 2)

    events = _events(set())[:5]
    emitted = per_event(handler)(events, None)  # type: ignore[arg-type]
    assert seen == [0, 1, 2, 3, 4]
    assert emitted == [{"n": 1}, {"n": 3}]


def test_dlq_limit_stops_before_a_stream_is_dead_lettered(db: Settings) -> None:
    from dataclasses import replace

    from supplybus.consumers.runtime.processor import DlqLimit
    from supplybus.errors import ProcessorError

    limited = replace(keyed_sums(), dlq_limit=DlqLimit(max_ratio=0.2, min_records=10))
    events = _events(poison=set(range(6, KEYS * PER_KEY)))  # from the 7th event on, all bad
    with connect(db) as conn:
        conn.execute("TRUNCATE applied_effects, processed_events, dead_letters, outbox")
        conn.commit()
        applier = BatchApplier(limited, EventCatalog.from_settings(db), lambda t: f"{t}.dlq")
        applier.apply(conn, events[:8], [])  # 2 of 8 dead: under min_records, committed
        with pytest.raises(ProcessorError, match="over its limit of 20%"):
            applier.apply(conn, events[8:16], [])
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert dead == (2,)  # the batch over the limit was rolled back
    assert flood.count_effects(db) == 6


def test_ledger_compares_event_ids_as_uuids_whatever_their_spelling(db: Settings) -> None:
    import uuid

    from supplybus.consumers.runtime import ledger

    ids = [str(uuid.uuid4()).upper() for _ in range(6)]  # a foreign producer's spelling
    events = [
        Event("StockMovement", {"envelope": {"event_id": i}}, TOPIC, 0, n, None)
        for n, i in enumerate(ids)
    ]
    with connect(db) as conn, conn.transaction():
        assert ledger.claim(conn, "spelling", events[:3]) == events[:3]
        lower = Event(
            "StockMovement", {"envelope": {"event_id": ids[4].lower()}}, TOPIC, 0, 9, None
        )
        again = [*events[:3], events[0], *events[3:], lower]  # re-delivered, duplicated, respelled
        assert ledger.claim(conn, "spelling", again) == events[3:]
        conn.execute("DELETE FROM processed_events WHERE processor = 'spelling'")
