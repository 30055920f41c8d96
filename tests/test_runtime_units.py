"""Pure cores of the runtime, without broker or database: decoding a batch of real Kafka
messages, offsets to commit, the dead-letter budget, fault classification, emitted ids."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from confluent_kafka import Message
from hypothesis import given
from hypothesis import strategies as st

from supplybus.config import Settings
from supplybus.consumers.runtime.budget import DeadLetterBudget, Window, spend
from supplybus.consumers.runtime.decode import BatchDecoder
from supplybus.consumers.runtime.faults import Fault, fault_of
from supplybus.consumers.runtime.offsets import commit_offsets
from supplybus.errors import (
    BusinessRuleError,
    ContractError,
    DatabaseUnavailable,
    DecodeError,
    ProcessorError,
    ValidationError,
)
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import caused_by, new_envelope
from supplybus.events.samples import sample_record
from tests import flood

TOPIC = "inventory.stock-movements.v1"


@pytest.fixture(scope="module")
def catalog() -> EventCatalog:
    return EventCatalog.from_settings(Settings())


def _msg(value: bytes | None, offset: int = 0, **kw: object) -> Message:
    return Message(
        topic=kw.get("topic", TOPIC),
        partition=kw.get("partition", 0),
        offset=offset,
        key=kw.get("key", b"k"),
        value=value,
        headers=kw.get("headers", []),
        timestamp=(1, 1_700_000_000_000),
    )


def _encoded(catalog: EventCatalog, **changes: object) -> bytes:
    return catalog.codec.encode(flood.with_fields(flood.movement("units", 0, 1), **changes))


def test_decoder_turns_every_foreign_record_into_an_event_or_a_failure(
    catalog: EventCatalog,
) -> None:
    decoder = BatchDecoder(catalog, ("StockMovement",))
    good = _encoded(catalog)
    requisition = catalog.codec.encode(sample_record(catalog.store.latest("RequisitionSubmitted")))
    msgs = [
        _msg(good, 0, headers=[("x-none", None), ("bin", b"\xff\xfe")]),
        _msg(b"\xc3\x01garbage", 1),
        _msg(None, 2),
        _msg(_encoded(catalog, envelope__event_id="not-a-uuid"), 3),
        _msg(_encoded(catalog, quantity__value=flood.value_of(1) * -7), 4),
        _msg(_encoded(catalog, quantity__uom="BOGUS"), 5),
        _msg(requisition, 6, topic="procurement.requisitions.v1"),
        _msg(good, 8, topic="procurement.requisitions.v1"),
        _msg(good, 7, key=b"k" * 9000),
    ]
    batch = decoder(msgs)
    assert [e.offset for e in batch.events] == [0, 7]
    assert batch.events[0].headers[0] == ("x-none", None)
    errors = {f.offset: f.error for f in batch.failures}
    assert set(errors) == {1, 2, 3, 4, 5, 8}
    assert isinstance(errors[1], DecodeError) and isinstance(errors[2], DecodeError)
    assert "envelope.event_id: a UUID" in str(errors[3])
    assert "quantity" in str(errors[4]) and isinstance(errors[4], ValidationError)
    assert "BOGUS" in str(errors[5])
    assert isinstance(errors[8], ContractError)  # a StockMovement on the requisitions topic
    assert batch.skipped == 1  # a type its topic carries, not consumed by this processor


def test_commit_offsets_are_the_next_offset_per_partition() -> None:
    msgs = [_msg(b"", 5, partition=1), _msg(b"", 3, partition=0), _msg(b"", 6, partition=1)]
    got = {(tp.topic, tp.partition): tp.offset for tp in commit_offsets(msgs)}
    assert got == {(TOPIC, 0): 4, (TOPIC, 1): 7}


def test_budget_stops_a_run_of_dead_letters_but_lets_sporadic_poison_flow() -> None:
    budget = DeadLetterBudget(max_consecutive=5, max_in_window=3, window=20)
    windows, exhausted = spend({}, {"t": [True, False] * 3}, budget)
    assert exhausted is None and windows["t"].consecutive == 0
    _, exhausted = spend({}, {"t": [False] + [True] * 6}, budget)
    assert exhausted == "t"
    windows, exhausted = spend({}, {"t": [True] + [False] * 9}, budget)
    windows, exhausted = spend(windows, {"t": [True, False, True, False]}, budget)
    assert exhausted is None  # 3 in the last 20
    _, exhausted = spend(windows, {"t": [True]}, budget)
    assert exhausted == "t"  # 4 in the last 20


@given(st.lists(st.booleans(), max_size=200), st.integers(1, 8))
def test_budget_window_counts_only_the_last_records(flags: list[bool], window: int) -> None:
    budget = DeadLetterBudget(max_consecutive=1000, max_in_window=1000, window=window)
    after = Window().after(flags, budget)
    assert after.recent == tuple(flags[-window:]) if flags else after.recent == ()


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (DatabaseUnavailable("down"), Fault.TRANSIENT),
        (ConnectionError("peer reset"), Fault.TRANSIENT),
        (TimeoutError(), Fault.TRANSIENT),
        (psycopg.errors.lookup("40001")(), Fault.TRANSIENT),
        (psycopg.errors.lookup("57P01")(), Fault.TRANSIENT),
        (psycopg.errors.lookup("53100")(), Fault.TRANSIENT),
        (psycopg.errors.lookup("57014")(), Fault.TRANSIENT),
        (psycopg.OperationalError("connection lost"), Fault.TRANSIENT),
        (psycopg.errors.lookup("54000")(), Fault.EVENT),  # index row too large
        (psycopg.errors.lookup("23505")(), Fault.EVENT),
        (psycopg.errors.lookup("22003")(), Fault.EVENT),
        (psycopg.errors.lookup("42P01")(), Fault.PROCESSOR),  # undefined table
        (psycopg.errors.lookup("42501")(), Fault.PROCESSOR),
        (ProcessorError("bug"), Fault.PROCESSOR),
        (BusinessRuleError("no"), Fault.EVENT),
        (KeyError("x"), Fault.EVENT),
    ],
)
def test_every_error_has_one_fault(error: BaseException, fault: Fault) -> None:
    assert fault_of(error) is fault


def test_emitted_ids_depend_on_emitter_and_discriminator() -> None:
    parent = new_envelope("StockMovement", source_system="s", entity_id="E", actor="a")
    ids = {
        caused_by(parent, "StockoutRisk", emitter=emitter, discriminator=d)["event_id"]
        for emitter in ("p1", "p2")
        for d in ("line-1", "line-2")
    }
    assert len(ids) == 4
    again = caused_by(parent, "StockoutRisk", emitter="p1", discriminator="line-1")
    assert again["event_id"] in ids and uuid.UUID(again["event_id"])
    with pytest.raises(TypeError):
        caused_by(parent, "StockoutRisk", emitter="p1")  # type: ignore[call-arg]
