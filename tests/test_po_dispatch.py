"""The PO dispatcher on the real database and a real folder: each PO delivered once, with the
exact bytes; a target that is down retried, alerted, then delivered; two dispatchers; a
cancelled PO; a different file never overwritten; kill -9 between the write and the mark."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest

from supplybus.adapters.outbound import DocumentConflict, FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.procurement.dispatch import Backoff, PoDispatcher, render
from supplybus.errors import PermanentError, TargetUnavailable
from supplybus.metrics import Metrics
from tests.helpers import cli_env, run_cli, wait_for

FAST = Backoff(base_s=0.05, cap_s=0.2)


def _document(po_id: str, po_number: str, priority: str) -> dict[str, Any]:
    return {
        "layout": "supplybus.po.v1",
        "po_id": po_id,
        "po_number": po_number,
        "requisition_id": "REQ-1",
        "entity_id": "ENT-EAST",
        "facility_id": "FAC-E1",
        "supplier_id": "SUP-001",
        "ship_to_location_id": "LOC-E1-DOCK",
        "cost_center_id": "CC-E1-SURG",
        "currency": "USD",
        "total": "125.5000",
        "issued_at": "2025-03-03T09:30:00Z",
        "correlation_id": "REQ-1",
        "priority": priority,
        "lines": [
            {
                "line_number": 1,
                "item_id": "ITEM-0001",
                "quantity": "10.000",
                "uom": "EA",
                "unit_price": "12.5500",
                "amount": "125.5000",
                "cost_center_id": "CC-E1-SURG",
                "need_by": "2025-03-10",
            }
        ],
    }


def _po(
    conn: psycopg.Connection,
    po_number: str,
    *,
    priority: str = "ROUTINE",
    status: str = "ISSUED",
    age_s: float = 0.0,
) -> dict[str, Any]:
    """A purchase order and its pending delivery (and the requisition it needs), as the
    purchase-orders processor writes them; returns the document."""
    po_id = str(uuid.uuid4())
    conn.execute(
        """
        INSERT INTO requisitions (requisition_id, entity_id, requester_id, cost_center_id,
            urgency, priority, total, currency, status, lines, correlation_id, submitted_at,
            event_id)
        VALUES ('REQ-1', 'ENT-EAST', 'U-1', 'CC-E1-SURG', 'ROUTINE', 'ROUTINE', 125.5, 'USD',
            'ORDERED', '[]', 'REQ-1', now(), gen_random_uuid())
        ON CONFLICT DO NOTHING
        """
    )
    conn.execute(
        """
        INSERT INTO purchase_orders (po_id, po_number, requisition_id, entity_id, facility_id,
            supplier_id, cost_center_id, ship_to_location_id, total, currency, status,
            priority, budget_period, correlation_id, issued_at)
        VALUES (%s, %s, 'REQ-1', 'ENT-EAST', 'FAC-E1', 'SUP-001', 'CC-E1-SURG', 'LOC-E1-DOCK',
            125.5, 'USD', %s, %s, '2025-03', 'REQ-1', now())
        """,
        (po_id, po_number, status, priority),
    )
    document = _document(po_id, po_number, priority)
    conn.execute(
        """
        INSERT INTO po_deliveries (po_id, po_number, document, created_at)
        VALUES (%s, %s, %s, now() - make_interval(secs => %s))
        """,
        (po_id, po_number, json.dumps(document), age_s),
    )
    return document


def _rows(settings: Settings) -> dict[str, tuple[Any, ...]]:
    """po_number -> (status, attempts, alerted, delivered_to, last_error)."""
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT po_number, status, attempts, alerted_at IS NOT NULL, delivered_to, last_error"
            " FROM po_deliveries"
        ).fetchall()
    return {r[0]: r[1:] for r in rows}


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _pass(settings: Settings, target: Any, **kwargs: Any) -> list[Any]:
    with connect(settings, autocommit=True) as conn:
        return PoDispatcher(settings, target, **kwargs).dispatch_pass(conn)


def test_a_po_is_delivered_once_with_the_exact_bytes(migrated: Settings, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with connect(migrated) as conn:
        doc = _po(conn, "PO-EAST-000001")
    [outcome] = _pass(migrated, FolderTarget(out))

    assert outcome.kind == "delivered" and outcome.detail == str(out / "PO-EAST-000001.json")
    assert _files(out) == ["PO-EAST-000001.json"]  # no temporary file left behind
    body = (out / "PO-EAST-000001.json").read_bytes()
    assert body == (json.dumps(doc, sort_keys=True, indent=2) + "\n").encode()
    assert body.startswith(b'{\n  "correlation_id": "REQ-1",\n  "cost_center_id"')
    assert _rows(migrated)["PO-EAST-000001"] == ("DELIVERED", 1, False, outcome.detail, None)
    assert _pass(migrated, FolderTarget(out)) == []  # delivered: never again
    assert _files(out) == ["PO-EAST-000001.json"]


def test_critical_pos_go_first_then_the_oldest(migrated: Settings, tmp_path: Path) -> None:
    with connect(migrated) as conn:
        _po(conn, "PO-EAST-000001", age_s=30)
        _po(conn, "PO-EAST-000002", age_s=20)
        _po(conn, "PO-EAST-000003", priority="CRITICAL", age_s=10)
    outcomes = _pass(migrated, FolderTarget(tmp_path))
    assert [o.po_number for o in outcomes] == ["PO-EAST-000003", "PO-EAST-000001", "PO-EAST-000002"]


def test_a_cancelled_po_is_not_delivered(migrated: Settings, tmp_path: Path) -> None:
    with connect(migrated) as conn:
        _po(conn, "PO-EAST-000001", status="CANCELLED")
        _po(conn, "PO-EAST-000002")
    outcomes = _pass(migrated, FolderTarget(tmp_path))
    assert [(o.po_number, o.kind) for o in outcomes] == [
        ("PO-EAST-000001", "cancelled"),
        ("PO-EAST-000002", "delivered"),
    ]
    assert _files(tmp_path) == ["PO-EAST-000002.json"]
    assert _rows(migrated)["PO-EAST-000001"][:2] == ("CANCELLED", 0)


def test_a_target_down_is_retried_alerted_then_delivered_once(
    migrated: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Acceptance of issue 17: outbound target down -> retry, alert, then delivered once."""
    share = tmp_path / "share"  # not mounted yet
    with connect(migrated) as conn:
        doc = _po(conn, "PO-EAST-000001")
    metrics = Metrics()
    dispatcher = PoDispatcher(
        migrated, FolderTarget(share), metrics, alert_after_s=0.5, backoff=FAST
    )
    stop = threading.Event()
    worker = threading.Thread(target=dispatcher.run, args=(stop, 0.02), daemon=True)
    caplog.set_level(logging.WARNING, "supplybus.po_dispatch")
    worker.start()
    try:
        wait_for(lambda: _rows(migrated)["PO-EAST-000001"][2], timeout=10, what="the alert")
        status, attempts, _, _, error = _rows(migrated)["PO-EAST-000001"]
        assert status == "PENDING" and attempts >= 3 and "does not exist" in (error or "")
        alerts = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(alerts) == 1
        assert "PO-EAST-000001" in alerts[0].getMessage()
        assert f"folder:{share}" in alerts[0].getMessage()
        assert _sample(metrics, "supplybus_po_deliveries_overdue") == 1

        share.mkdir()  # the share is back
        wait_for(
            lambda: _rows(migrated)["PO-EAST-000001"][0] == "DELIVERED",
            timeout=10,
            what="the delivery",
        )
    finally:
        stop.set()
        worker.join(5)
    assert dispatcher.error is None
    assert _files(share) == ["PO-EAST-000001.json"]
    assert (share / "PO-EAST-000001.json").read_bytes() == render(doc)
    assert dispatcher.stats.delivered == 1 and dispatcher.stats.alerts == 1
    assert _sample(metrics, "supplybus_po_delivery_alerts_total") == 1
    assert _sample(metrics, "supplybus_po_deliveries_total", outcome="delivered") == 1
    assert _sample(metrics, "supplybus_po_deliveries_total", outcome="retried") >= 3
    assert _sample(metrics, "supplybus_po_deliveries_overdue") == 0
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1  # alerted once


class _Recording:
    """A folder target that counts its deliveries and holds each a moment (to overlap)."""

    def __init__(self, path: Path) -> None:
        self.folder = FolderTarget(path)
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.folder.name

    def deliver(self, po_number: str, document: bytes) -> str:
        with self.lock:
            self.calls[po_number] += 1
        threading.Event().wait(0.005)
        return self.folder.deliver(po_number, document)


def test_two_dispatchers_deliver_each_po_once(migrated: Settings, tmp_path: Path) -> None:
    numbers = [f"PO-EAST-{n:06d}" for n in range(1, 41)]
    with connect(migrated) as conn:
        for number in numbers:
            _po(conn, number, priority="CRITICAL" if number.endswith("7") else "ROUTINE")
    target = _Recording(tmp_path)
    dispatchers = [PoDispatcher(migrated, target) for _ in range(2)]
    start = threading.Barrier(2)

    def work(d: PoDispatcher) -> None:
        start.wait()
        with connect(migrated, autocommit=True) as conn:
            d.dispatch_pass(conn)

    threads = [threading.Thread(target=work, args=(d,)) for d in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert target.calls == Counter({n: 1 for n in numbers}), "a PO delivered twice or never"
    assert all(d.stats.delivered > 0 for d in dispatchers), "both dispatchers took part"
    assert _files(tmp_path) == [f"{n}.json" for n in numbers]
    assert {r[:2] for r in _rows(migrated).values()} == {("DELIVERED", 1)}


def test_a_different_file_is_never_overwritten(migrated: Settings, tmp_path: Path) -> None:
    with connect(migrated) as conn:
        doc = _po(conn, "PO-EAST-000001")
    taken = tmp_path / "PO-EAST-000001.json"
    taken.write_bytes(b'{"po_number": "PO-EAST-000001", "total": "1.00"}\n')

    env = {**cli_env(migrated, tmp_path / "home"), "SUPPLYBUS_LOG_LEVEL": "ERROR"}
    done = run_cli("po", "dispatch", "--once", "--target", str(tmp_path), env=env)
    assert done.returncode == 1, done.stderr
    assert "FAILED PO-EAST-000001 [ALERT] (attempt 1" in done.stdout
    assert f"{taken} already exists with other content" in done.stdout
    assert "Traceback" not in done.stderr
    assert taken.read_bytes() == b'{"po_number": "PO-EAST-000001", "total": "1.00"}\n'
    status, attempts, alerted, _, error = _rows(migrated)["PO-EAST-000001"]
    assert (status, attempts, alerted) == ("PENDING", 1, True)
    assert (error or "").startswith(f"permanent: {taken} already exists")

    taken.unlink()  # someone checked it and moved it away: the PO goes out at the next attempt
    with connect(migrated) as conn:
        conn.execute("UPDATE po_deliveries SET next_attempt_at = now()")
    [outcome] = _pass(migrated, FolderTarget(tmp_path))
    assert outcome.kind == "delivered" and taken.read_bytes() == render(doc)


def test_kill_9_after_the_write_delivers_the_same_file_once(
    migrated: Settings, tmp_path: Path
) -> None:
    """Crash point po-after-write: the file is there, the row is not marked; the next run
    writes the same bytes again (harmless) and marks it: one file, the right content."""
    out = tmp_path / "out"
    out.mkdir()
    with connect(migrated) as conn:
        doc = _po(conn, "PO-EAST-000001", age_s=10)  # the older one goes first
        _po(conn, "PO-EAST-000002")
    env = cli_env(migrated, tmp_path / "home")
    run = ("po", "dispatch", "--once", "--target", str(out))
    crashed = run_cli(*run, env={**env, "SUPPLYBUS_CRASH_AT": "po-after-write"})
    assert crashed.returncode == 137, crashed.stderr
    assert _files(out) == ["PO-EAST-000001.json"]
    assert _rows(migrated)["PO-EAST-000001"][:2] == ("PENDING", 0)

    finished = run_cli(*run, env=env)
    assert finished.returncode == 0, finished.stderr
    assert "delivered PO-EAST-000001 ->" in finished.stdout
    assert _files(out) == ["PO-EAST-000001.json", "PO-EAST-000002.json"]
    assert (out / "PO-EAST-000001.json").read_bytes() == render(doc)
    assert {r[:2] for r in _rows(migrated).values()} == {("DELIVERED", 1)}


def test_po_deliveries_lists_status_attempts_and_alerts(migrated: Settings, tmp_path: Path) -> None:
    with connect(migrated) as conn:
        _po(conn, "PO-EAST-000001", status="CANCELLED")
        _po(conn, "PO-EAST-000002", age_s=60)
    env = cli_env(migrated, tmp_path / "home")
    missing = tmp_path / "missing"
    first = run_cli(
        "po", "dispatch", "--once", "--target", str(missing), "--alert-after", "30", env=env
    )
    assert first.returncode == 0, first.stderr
    assert "retrying PO-EAST-000002 [ALERT] (attempt 1" in first.stdout
    assert "ALERT: PO PO-EAST-000002 has waited" in first.stderr
    assert f"target folder:{missing}" in first.stderr

    listed = run_cli("po", "deliveries", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["po_number"]: r for r in json.loads(listed.stdout)}
    assert rows["PO-EAST-000001"]["status"] == "CANCELLED"
    pending = rows["PO-EAST-000002"]
    assert (pending["status"], pending["attempts"], pending["alerted"]) == ("PENDING", 1, True)
    assert "does not exist" in pending["last_error"]

    only = run_cli("po", "deliveries", "--status", "pending", env=env)
    assert only.returncode == 0, only.stderr
    assert "PO-EAST-000002" in only.stdout and "PO-EAST-000001" not in only.stdout

    bad = run_cli("po", "dispatch", "--once", "--alert-after", "0", env=env)
    assert bad.returncode == 2 and "--alert-after" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_folder_target_rules(tmp_path: Path) -> None:
    """Same bytes again: harmless; other bytes: refused naming the file; a missing folder is
    a target that is down; a PO number that is not a file name is refused."""
    target = FolderTarget(tmp_path)
    where = target.deliver("PO-EAST-000001", b"{}\n")
    assert target.deliver("PO-EAST-000001", b"{}\n") == where
    with pytest.raises(DocumentConflict, match="PO-EAST-000001.json already exists"):
        target.deliver("PO-EAST-000001", b'{"other": 1}\n')
    assert Path(where).read_bytes() == b"{}\n"
    with pytest.raises(TargetUnavailable, match="does not exist"):
        FolderTarget(tmp_path / "gone").deliver("PO-EAST-000002", b"{}\n")
    for bad in ("../x", ".hidden", "a/b", ""):
        with pytest.raises(PermanentError, match="not usable as a file name"):
            target.deliver(bad, b"{}\n")
    assert _files(tmp_path) == ["PO-EAST-000001.json"]


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_supplybus_run_starts_the_dispatcher_and_idles_once_delivered(
    migrated: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with connect(migrated) as conn:
        doc = _po(conn, "PO-EAST-000001")
    env = {**cli_env(migrated, tmp_path / "home"), "SUPPLYBUS_PO_OUTBOX_DIR": str(out)}
    done = run_cli("run", "po-dispatch", "--until-idle", "--idle-seconds", "0.5", env=env)
    assert done.returncode == 0, done.stderr
    assert (out / "PO-EAST-000001.json").read_bytes() == render(doc)
    assert _rows(migrated)["PO-EAST-000001"][:2] == ("DELIVERED", 1)
