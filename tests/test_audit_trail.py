"""The audit trail on the real database: chains per entity, idempotent re-appends, concurrent
appenders that never fork a chain, and verification naming rows edited or deleted by hand."""

from __future__ import annotations

import datetime as dt
import threading

import psycopg
import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.audit import AuditEntry, append, history, verify
from supplybus.errors import ProcessorError

T0 = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)


def entry(entity_id: str, n: int, entity_type: str = "requisition", **kw: str) -> AuditEntry:
    return AuditEntry(
        entity_type=entity_type,
        entity_id=entity_id,
        action=kw.get("action", f"step-{n}"),
        actor=kw.get("actor", "nurse-7"),
        at=T0 + dt.timedelta(seconds=n, microseconds=n),
        event_id=kw.get("event_id", f"00000000-0000-0000-0000-{n:012d}"),
        correlation_id="corr-1",
        reason="within the ward's limit",
        rule_ids=("R-5K", "R-CAT"),
        rule_version="enterprise@3",
        detail={"amount": "4999.95", "status": "APPROVED"},
    )


def tamper(conn: psycopg.Connection, statement: str) -> None:
    """What someone with the table owner's rights can do: bypass the append-only trigger."""
    with conn.transaction():
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
        conn.execute(statement)
        conn.execute("ALTER TABLE audit_log ENABLE TRIGGER USER")


def test_chains_per_entity_read_back_and_verify(migrated: Settings) -> None:
    with connect(migrated) as conn:
        rows = append(conn, [entry("REQ-1", 1), entry("REQ-2", 1), entry("REQ-1", 2)])
        conn.commit()
        append(conn, [entry("REQ-1", 3), entry("PO-1", 1, "purchase_order")])
        conn.commit()
        assert [(r.entry.entity_id, r.seq) for r in rows] == [
            ("REQ-1", 1),
            ("REQ-1", 2),
            ("REQ-2", 1),
        ]
        found = history(conn, "REQ-1")
        assert [r.seq for r in found] == [1, 2, 3]
        assert found[1].prev_hash == found[0].hash and found[2].prev_hash == found[1].hash
        assert found[0].entry == entry("REQ-1", 1)  # every field survives the round trip
        report = verify(conn)
        assert (report.intact, report.entities, report.entries) == (True, 3, 5)
        assert verify(conn, "purchase_order").entries == 1


def test_a_reapplied_batch_appends_nothing(migrated: Settings) -> None:
    with connect(migrated) as conn:
        batch = [entry("REQ-1", 1), entry("REQ-1", 2)]
        assert len(append(conn, batch)) == 2
        conn.commit()
        assert append(conn, [*batch, entry("REQ-1", 1)]) == []
        again = append(conn, [entry("REQ-1", 2), entry("REQ-1", 3), entry("REQ-1", 3)])
        conn.commit()
        assert [r.seq for r in again] == [3]  # only the new one, once
        # the same event may cause two actions on one entity, and one action on two entities
        both = append(conn, [entry("REQ-1", 2, action="priced"), entry("REQ-9", 2)])
        conn.commit()
        assert [(r.entry.entity_id, r.seq) for r in both] == [("REQ-1", 4), ("REQ-9", 1)]
        assert verify(conn).intact


def test_concurrent_appenders_never_fork_a_chain(migrated: Settings) -> None:
    per_thread, errors = 40, []

    def work(name: str, others: list[str]) -> None:
        try:
            with connect(migrated) as conn:
                for n in range(per_thread):
                    ids = {"event_id": f"{name}-{n}"}
                    append(
                        conn, [entry(o, n, **ids) for o in others] + [entry("REQ-HOT", n, **ids)]
                    )
                    conn.commit()
        except Exception as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [
        threading.Thread(target=work, args=("a", ["REQ-A", "REQ-Z"])),
        threading.Thread(target=work, args=("b", ["REQ-Z", "REQ-B"])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with connect(migrated) as conn:
        hot = history(conn, "REQ-HOT")
        assert [r.seq for r in hot] == list(range(1, 2 * per_thread + 1))
        assert len({r.prev_hash for r in hot}) == len(hot)  # no two entries after one
        assert len(history(conn, "REQ-Z")) == 2 * per_thread
        report = verify(conn)
        assert report.intact, report.problems
        assert report.entries == 6 * per_thread


def test_a_row_edited_by_hand_is_named(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", n) for n in (1, 2, 3)] + [entry("REQ-2", 1)])
        conn.commit()
        tamper(conn, "UPDATE audit_log SET actor = 'ceo' WHERE entity_id = 'REQ-1' AND seq = 2")
        problems = verify(conn).problems
        assert [str(p) for p in problems] == ["requisition REQ-1 seq 2: edited (hash mismatch)"]


def test_a_row_deleted_by_hand_is_named(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", n) for n in (1, 2, 3, 4)] + [entry("REQ-2", 1)])
        conn.commit()
        tamper(conn, "DELETE FROM audit_log WHERE entity_id = 'REQ-1' AND seq IN (2, 4)")
        tamper(conn, "DELETE FROM audit_log WHERE entity_id = 'REQ-2'")
        problems = [str(p) for p in verify(conn).problems]
        assert problems == [
            "requisition REQ-1 seq 2: deleted (seq 2 missing)",
            "requisition REQ-1 seq 4: deleted (seq 4 missing)",
            "requisition REQ-2 seq 1: deleted (seq 1 missing)",
        ]


def test_two_rows_swapped_by_hand_are_named_as_reordered(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", n) for n in (1, 2, 3, 4)])
        conn.commit()
        tamper(
            conn,
            "UPDATE audit_log SET seq = 1000 WHERE entity_id = 'REQ-1' AND seq = 2;"
            "UPDATE audit_log SET seq = 2 WHERE entity_id = 'REQ-1' AND seq = 3;"
            "UPDATE audit_log SET seq = 3 WHERE entity_id = 'REQ-1' AND seq = 1000",
        )
        problems = [str(p) for p in verify(conn).problems]
        assert problems == [
            "requisition REQ-1 seq 2: reordered (written as seq 3)",
            "requisition REQ-1 seq 3: reordered (written as seq 2)",
        ]


def test_the_log_refuses_updates_and_deletes(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", 1)])
        conn.commit()
        for statement in (
            "UPDATE audit_log SET actor = 'x'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement)
            conn.rollback()


def test_verify_streams_in_small_pages_and_reports_progress(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry(f"REQ-{k:03d}", n) for k in range(60) for n in (1, 2, 3)])
        conn.commit()
        tamper(conn, "DELETE FROM audit_heads WHERE entity_id = 'REQ-007'")
        tamper(conn, "UPDATE audit_log SET action = 'x' WHERE entity_id = 'REQ-059' AND seq = 3")
        seen: list[int] = []
        report = verify(conn, on_chain=seen.append, itersize=7)
        assert (report.entities, report.entries, sum(seen), len(seen)) == (60, 180, 180, 60)
        assert [str(p) for p in report.problems] == [
            "requisition REQ-007 seq 3: deleted (its head is missing)",
            "requisition REQ-059 seq 3: edited (hash mismatch)",
        ]


def test_verify_refuses_a_connection_with_uncommitted_writes(migrated: Settings) -> None:
    with connect(migrated) as conn:
        append(conn, [entry("REQ-1", 1)])
        with pytest.raises(ProcessorError, match="uncommitted writes"):
            verify(conn)
        conn.commit()
        history(conn, "REQ-1")  # a read-only transaction is fine
        assert verify(conn).entries == 1
