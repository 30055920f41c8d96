"""Property: whatever the batching, re-delivery, transient failures and poison records, every
event's effect is applied exactly once, in order per key (the batch applier on the real
database; events carry real Kafka messages with bytes and headers, no broker)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import cast

import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.runtime import hold
from supplybus.consumers.runtime.apply import BatchApplier
from supplybus.consumers.runtime.budget import DeadLetterBudget
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.processor import BatchHandler, Event, Record
from supplybus.errors import DeadLetterBudgetExhausted, TransientError
from supplybus.events.catalog import EventCatalog
from supplybus.producers.outbox import decode_headers
from tests import flood
from tests.processors import keyed_sums, setup

KEYS, PER_KEY = 4, 6
TOPIC = "inventory.stock-movements.v1"


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[list[int]], set[int], set[int]]:
    """Batches of indexes into the event list: in order, with earlier ranges delivered again
    (a crash, a stop or a rebalance before the offset commit), some indexes that are poison,
    and batches whose first attempt fails transiently (retried as a whole)."""
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
    transient = draw(st.sets(st.integers(0, len(batches) - 1), max_size=3))
    return batches, poison, transient


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
    catalog = EventCatalog.from_settings(Settings())
    out = []
    for i, record in enumerate(records):
        if i in poison:
            record = {**record, "reason": "reject"}
        prepared = catalog.prepare(record, check="none")
        msg = Message(
            topic=TOPIC,
            partition=i % 3,
            offset=i,
            key=prepared.key,
            value=prepared.value,
            headers=[*prepared.headers, ("x-foreign", None)],
            timestamp=(1, 1_700_000_000_000 + i),
        )
        out.append(Event("StockMovement", record, TOPIC, i % 3, i, msg))
    return out


class _Flaky:
    """Wraps a handler: raises TransientError on the first attempt of chosen batches."""

    def __init__(self, handle: BatchHandler) -> None:
        self.handle = handle
        self.fail_next = False

    def __call__(self, events: Sequence[Event], conn: psycopg.Connection) -> Iterable[Record]:
        if self.fail_next:
            self.fail_next = False
            raise TransientError("database blip")
        return self.handle(events, conn)


def _applied(conn: psycopg.Connection) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    for key, n in conn.execute("SELECT key, n FROM applied_effects ORDER BY seq").fetchall():
        got.setdefault(key, []).append(int(n))
    return got


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(deliveries(), st.sets(st.integers(0, 20), max_size=3))
def test_any_schedule_applies_each_event_once_in_key_order_past_dead_letters(
    db: Settings, schedule: tuple[list[list[int]], set[int], set[int]], failed_releases: set[int]
) -> None:
    """Per-key hold: the applied sequence of a key is its published sequence up to its first
    poison; once the dead letters are resolved (skipped), the rest follows in order, once."""
    batches, poison, transient = schedule
    events = _events(poison)
    with connect(db) as conn:
        conn.execute(
            "TRUNCATE applied_effects, processed_events, dead_letters, outbox, key_holds,"
            " held_events"
        )
        conn.commit()
        flaky = _Flaky(keyed_sums().handle)
        processor = replace(keyed_sums(), handle=flaky)
        catalog = EventCatalog.from_settings(db)
        applier = BatchApplier(processor, catalog, lambda t: f"{t}.dlq")
        decode = BatchDecoder(catalog, processor.consumes)
        for n, batch in enumerate(batches):
            flaky.fail_next = n in transient
            try:
                applier.apply(conn, [events[i] for i in batch], [])
            except TransientError:  # the lane retries the same batch
                conn.rollback()
                applier.apply(conn, [events[i] for i in batch], [])
            # (no exception: every event of the batch was a duplicate, the handler never ran)

        published: dict[str, list[tuple[int, int]]] = {}  # key -> [(index, n)] in order
        for i, e in enumerate(events):
            published.setdefault(e.record["item_id"], []).append((i, int(e.record["reference_id"])))
        before_poison = {
            key: [n for i, n in seq if i < min([j for j, _ in seq if j in poison] or [10**6])]
            for key, seq in published.items()
        }
        assert {k: v for k, v in _applied(conn).items()} == {
            k: v for k, v in before_poison.items() if v
        }, "a key's event was applied past its dead letter"

        rounds = 0
        while True:  # the operator skips every open dead letter; the lane releases the keys
            open_ids = [
                str(r[0])
                for r in conn.execute(
                    "SELECT dead_letter_id FROM dead_letters WHERE status = 'open'"
                ).fetchall()
            ]
            for dead_letter_id in open_ids:
                hold.resolve(conn, dead_letter_id, "resolved")
            conn.commit()
            while True:
                flaky.fail_next = rounds in failed_releases  # a crash mid-release rolls back
                rounds += 1
                try:
                    released = applier.release(conn, decode)
                except TransientError:
                    conn.rollback()
                    continue
                conn.commit()
                if released is None:
                    break
            if not open_ids:
                break
        left = conn.execute("SELECT count(*) FROM held_events").fetchone()
        dead = conn.execute('SELECT count(DISTINCT "offset") FROM dead_letters').fetchone()
    skip = {(events[i].record["item_id"], int(events[i].record["reference_id"])) for i in poison}
    flood.check_exactly_once(db, keys=KEYS, per_key=PER_KEY, skip=skip)
    assert left == (0,) and dead == (len(poison),)


def test_per_event_adapts_a_single_event_handler() -> None:
    from supplybus.consumers.runtime.processor import per_event

    seen: list[int] = []

    def handler(event: Event, conn: psycopg.Connection) -> list[dict[str, int]]:
        seen.append(event.offset)
        return [{"n": event.offset}] * (event.offset % 2)

    events = _events(set())[:5]
    emitted = per_event(handler)(events, cast(psycopg.Connection, None))  # never used
    assert seen == [0, 1, 2, 3, 4]
    assert emitted == [{"n": 1}, {"n": 3}]


def test_dead_letter_budget_stops_before_a_stream_is_dead_lettered(db: Settings) -> None:
    budget = DeadLetterBudget(max_consecutive=5, max_in_window=100, window=1000)
    limited = replace(keyed_sums(), dead_letter_budget=budget, on_dead_letter="continue")
    events = [  # one partition: one sporadic poison, then all bad from the 9th on
        replace(e, partition=0) for e in _events(poison={3, *range(8, KEYS * PER_KEY)})
    ]
    with connect(db) as conn:
        conn.execute(
            "TRUNCATE applied_effects, processed_events, dead_letters, outbox, key_holds,"
            " held_events"
        )
        conn.commit()
        applier = BatchApplier(limited, EventCatalog.from_settings(db), lambda t: f"{t}.dlq")
        applier.apply(conn, events[:10], [])  # 3 dead letters (1 sporadic, 2 in a row)
        with pytest.raises(DeadLetterBudgetExhausted, match="5 dead letters in a row"):
            applier.apply(conn, events[10:14], [])  # 6 in a row: over budget
        conn.rollback()
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
        assert dead == (3,)  # the batch over the budget was rolled back
        assert flood.count_effects(db) == 7
        with pytest.raises(DeadLetterBudgetExhausted):  # a restart resumes there: halts again
            applier.apply(conn, events[10:14], [])
        conn.rollback()
        raised = BatchApplier(
            replace(limited, dead_letter_budget=DeadLetterBudget(max_consecutive=50)),
            EventCatalog.from_settings(db),
            lambda t: f"{t}.dlq",
        )
        raised.apply(conn, events[10:14], [])  # the operator raised the budget
        dead = conn.execute("SELECT count(*) FROM dead_letters").fetchone()
    assert dead == (7,)


def test_a_dead_letter_is_its_own_record_whatever_offsets_do(db: Settings) -> None:
    """After a broker reset offsets restart at 0: a new bad record at a reused offset is a new
    dead letter (own bytes, own DLQ record, own id); a re-delivery of one record is one."""
    from supplybus.consumers.runtime.deadletter import Failure
    from supplybus.errors import DecodeError

    def failure(value: bytes, timestamp: int) -> Failure:
        return Failure(TOPIC, 0, 0, timestamp, b"k", value, [("h", None)], DecodeError("bad"))

    with connect(db) as conn:
        conn.execute(
            "TRUNCATE applied_effects, processed_events, dead_letters, outbox, key_holds,"
            " held_events"
        )
        conn.commit()
        applier = BatchApplier(keyed_sums(), EventCatalog.from_settings(db), lambda t: f"{t}.dlq")
        applier.apply(conn, [], [failure(b"first", 1)])
        applier.apply(conn, [], [failure(b"first", 1)])  # re-delivered: same dead letter
        applier.apply(conn, [], [failure(b"second", 2)])  # broker reset: offset 0 again
        rows = conn.execute(
            "SELECT value, attempts, dead_letter_id::text FROM dead_letters ORDER BY id"
        ).fetchall()
        dlq = conn.execute("SELECT value, headers FROM outbox ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [(b"first", 2), (b"second", 1)]
    assert [d[0] for d in dlq] == [b"first", b"second"]
    ids = [dict((k, v) for k, v in decode_headers(d[1]))["sb-dlq-id"] for d in dlq]
    assert ids == [r[2].encode() for r in rows] and ids[0] != ids[1]
    assert ("h", None) in decode_headers(dlq[0][1])


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
