"""The audit trail's pure parts: canonical form, hashing, and verification naming every edit,
deletion and reordering of a chain (hypothesis), without a database."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.consumers.audit.chain import (
    GENESIS,
    AuditEntry,
    AuditRow,
    Head,
    Problem,
    canonical,
    extend,
    from_envelope,
    verify_chain,
)
from tests.strategies import instants

ENTITY = ("requisition", "REQ-1")
words = st.text(min_size=0, max_size=12).filter(lambda s: "\x00" not in s)
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=10)


@st.composite
def entries(draw: st.DrawFn) -> AuditEntry:
    return AuditEntry(
        entity_type=ENTITY[0],
        entity_id=ENTITY[1],
        action=draw(names),
        actor=draw(words),
        at=draw(instants),
        event_id=str(draw(st.uuids())),
        correlation_id=str(draw(st.uuids())),
        reason=draw(words),
        rule_ids=tuple(draw(st.lists(names, max_size=3))),
        rule_version=draw(words),
        detail=draw(st.dictionaries(names, words, max_size=3)),
    )


chains = st.lists(entries(), min_size=1, max_size=8).map(lambda es: extend(Head(), es))


def head_of(rows: list[AuditRow]) -> Head:
    return Head(rows[-1].seq, rows[-1].hash) if rows else Head()


def kinds(problems: list[Problem]) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in problems]


def test_the_canonical_form_is_the_documented_json() -> None:
    at = dt.datetime(2026, 11, 29, 10, 15, 53, 7, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    entry = AuditEntry(
        "requisition", "REQ-1", "approved", "dr. Müller", at, "e-1", "c-1",
        reason="within limit", rule_ids=("R2", "R1"), rule_version="7", detail={"b": "2", "a": "1"},
    )  # fmt: skip
    expected = (
        '{"action":"approved","actor":"dr. Müller","at":"2026-11-29T09:15:53.000007Z",'
        '"correlation_id":"c-1","detail":{"a":"1","b":"2"},"entity_id":"REQ-1",'
        '"entity_type":"requisition","event_id":"e-1","prev_hash":"' + GENESIS + '",'
        '"reason":"within limit","rule_ids":["R2","R1"],"rule_version":"7","seq":1,"v":1}'
    )
    assert canonical(entry, 1, GENESIS) == expected.encode()
    [row] = extend(Head(), [entry])
    assert row.hash == hashlib.sha256(expected.encode()).hexdigest()


def test_an_entry_refuses_a_naive_time_and_non_string_detail() -> None:
    naive = dt.datetime(2026, 1, 1)
    with pytest.raises(ValueError, match="timezone-aware"):
        AuditEntry("po", "PO-1", "issued", "a", naive, "e", "c")
    aware = naive.replace(tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="detail 'amount' must be a str"):
        AuditEntry("po", "PO-1", "issued", "a", aware, "e", "c", detail={"amount": 5})


def test_from_envelope_takes_the_events_ids_time_entity_and_actor() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    envelope = {"event_id": "e", "correlation_id": "c", "occurred_at": at, "entity_id": "R",
                "actor": "nurse-7"}  # fmt: skip
    entry = from_envelope(envelope, entity_type="requisition", action="validated", rule_ids=["V1"])
    assert (entry.entity_id, entry.actor, entry.at, entry.event_id, entry.correlation_id) == (
        "R",
        "nurse-7",
        at,
        "e",
        "c",
    )
    assert entry.rule_ids == ("V1",)


@given(chains)
def test_an_intact_chain_verifies_with_and_without_its_head(rows: list[AuditRow]) -> None:
    assert verify_chain(ENTITY, rows, head_of(rows)) == []
    assert verify_chain(ENTITY, list(reversed(rows))) == []  # the chain's order is seq
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))


ENTRY_FIELDS = [f.name for f in dataclasses.fields(AuditEntry)]


def _other(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, dt.datetime):
        return data.draw(instants.filter(lambda d: d != value))
    if isinstance(value, tuple):
        return data.draw(st.lists(names, max_size=3).map(tuple).filter(lambda v: v != value))
    if isinstance(value, dict):
        return data.draw(st.dictionaries(names, words, max_size=3).filter(lambda v: v != value))
    if isinstance(value, str) and len(value) == 64:  # a hash
        return data.draw(st.text("0123456789abcdef", min_size=64, max_size=64).filter(
            lambda v: v != value))  # fmt: skip
    return data.draw(names.filter(lambda v: v != value))


@given(chains, st.data())
def test_any_edit_of_any_field_is_named_at_its_row(
    rows: list[AuditRow], data: st.DataObject
) -> None:
    head = head_of(rows)
    i = data.draw(st.integers(0, len(rows) - 1))
    name = data.draw(st.sampled_from([*ENTRY_FIELDS, "prev_hash", "hash"]))
    row = rows[i]
    if name in ("prev_hash", "hash"):
        edited = dataclasses.replace(row, **{name: _other(getattr(row, name), data)})
    else:
        value = _other(getattr(row.entry, name), data)
        edited = dataclasses.replace(row, entry=dataclasses.replace(row.entry, **{name: value}))
    tampered = [*rows[:i], edited, *rows[i + 1 :]]
    found = verify_chain(ENTITY, tampered, head)
    assert kinds(found) == [(i + 1, "edited")], f"{name}: {found}"
    assert str(found[0]).startswith(f"requisition REQ-1 seq {i + 1}: edited (hash mismatch")


@given(chains, st.data())
def test_an_edited_sequence_number_is_detected(rows: list[AuditRow], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    seq = data.draw(st.integers(1, len(rows) + 3).filter(lambda s: s != rows[i].seq))
    tampered = [*rows[:i], dataclasses.replace(rows[i], seq=seq), *rows[i + 1 :]]
    found = verify_chain(ENTITY, tampered, head_of(rows))
    assert found and {p.seq for p in found} & {seq, i + 1}, found


@given(chains, st.data())
def test_any_deletion_is_named_as_the_missing_sequence_number(
    rows: list[AuditRow], data: st.DataObject
) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    kept = rows[:i] + rows[i + 1 :]
    found = verify_chain(ENTITY, kept, head_of(rows))
    assert kinds(found) == [(i + 1, "deleted")]
    assert f"seq {i + 1} missing" in str(found[0])
    if i < len(rows) - 1:  # only the head reveals a deleted newest entry
        assert kinds(verify_chain(ENTITY, kept)) == [(i + 1, "deleted")]


@given(chains, st.data())
def test_deleting_and_renumbering_is_named_as_a_broken_link(
    rows: list[AuditRow], data: st.DataObject
) -> None:
    """A row deleted and the later ones renumbered to close the gap (the head moved too)."""
    i = data.draw(st.integers(0, len(rows) - 2)) if len(rows) > 1 else 0
    kept = [dataclasses.replace(r, seq=n) for n, r in enumerate(rows[:i] + rows[i + 1 :], 1)]
    found = verify_chain(ENTITY, kept, head_of(kept))
    if len(rows) == 1:
        assert found == []  # an entity's only entry and its head deleted: nothing is left
        return
    assert kinds(found)[0] == (i + 1, "deleted")
    assert f"renumbered from seq {i + 2}, after a missing entry" in found[0].detail
    assert kinds(found)[1:] == [(n, "reordered") for n in range(i + 2, len(rows))]


@given(chains, st.data())
def test_any_reordering_names_every_moved_entry(rows: list[AuditRow], data: st.DataObject) -> None:
    order = data.draw(st.permutations(range(len(rows))))
    moved = [dataclasses.replace(rows[j], seq=n) for n, j in enumerate(order, start=1)]
    found = verify_chain(ENTITY, moved, head_of(rows))
    expected = [(n, "reordered") for n, j in enumerate(order, start=1) if n != j + 1]
    assert kinds(found) == expected
    for p in found:
        assert f"written as seq {order[p.seq - 1] + 1}" in p.detail


def test_an_edited_head_is_named() -> None:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    rows = extend(
        Head(), [AuditEntry("po", "PO-1", f"a{n}", "x", at, f"e{n}", "c") for n in range(3)]
    )
    assert kinds(verify_chain(("po", "PO-1"), rows, Head(3, GENESIS))) == [(3, "edited")]
    assert kinds(verify_chain(("po", "PO-1"), rows, Head(2, rows[1].hash))) == [(3, "edited")]
    assert kinds(verify_chain(("po", "PO-1"), [], Head(2, rows[1].hash))) == [(1, "deleted")]
