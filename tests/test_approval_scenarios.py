"""Approval scenarios through the broker, the database and the CLI (issue acceptance 3): the
STAT path on the critical lanes with its short SLA, over-budget to finance, off-contract to
sourcing, self-approval refused and the fallback queue with its alert, an authority limit
refused, escalation after the SLA (time injected), a denial, and a cancellation releasing the
budget commitment."""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.events.envelope import deterministic_id
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import SAMPLE, TODAY, about, submitted
from tests.test_requisition_to_po import run_pipeline
from tests.workers import fresh_group

Record = dict[str, Any]


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def _refused(result: Any, words: str) -> None:
    assert result.returncode != 0, result.stdout
    assert words in result.stderr and "Traceback" not in result.stderr, result.stderr


def _low_limit_manager() -> Record:
    """A second manager of ENT-EAST whose authority stops at 1,000 USD."""
    mgr = copy.deepcopy(next(r for r in SAMPLE if r.get("approver_id") == "APR-EAST-MGR"))
    mgr["approver_id"], mgr["name"] = "APR-EAST-MGR2", "Junior Manager"
    mgr["authority_limit"] = {"amount": Decimal("1000.0000"), "currency": "USD"}
    mgr["envelope"]["event_id"] = deterministic_id("test-scenarios", "APR-EAST-MGR2")
    return mgr


def _steps(settings: Settings, rid: str) -> list[tuple[Any, ...]]:
    with connect(settings) as conn:
        return conn.execute(
            "SELECT step, role, roles, status, decided_by, due_at, requested_at"
            " FROM approval_steps WHERE requisition_id = %s ORDER BY step",
            (rid,),
        ).fetchall()


def _status(settings: Settings, rid: str) -> str:
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT status FROM requisitions WHERE requisition_id = %s", (rid,)
        ).fetchone()
    assert row is not None, rid
    return str(row[0])


def test_approval_scenarios(
    isolated: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    outbound = tmp_path / "outbound"
    outbound.mkdir()
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([*SAMPLE, _low_limit_manager()])
    run_pipeline(settings, outbound)

    stat = submitted("REQ-STAT", [about(Decimal(3000))], urgency="STAT")
    dear = about(Decimal(3000), skip=1)
    dear["unit_price"] = {"amount": dear["unit_price"]["amount"] + 1, "currency": "USD"}
    off = submitted("REQ-OFF", [dear])
    over = submitted("REQ-OVER", [about(Decimal(50_000), skip=2)], center="CC-E1-RES")
    own = submitted("REQ-OWN", [about(Decimal(3000), skip=3)], requester="APR-EAST-MGR")
    late = submitted("REQ-LATE", [about(Decimal(3000), skip=4)])
    denied = submitted("REQ-DENY", [about(Decimal(3000), skip=5)])
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([stat, off, over, own, late, denied])
    with caplog.at_level(logging.ERROR, logger="supplybus.consumers.approvals.processor"):
        run_pipeline(settings, outbound)

    # routing: the STAT step due in an hour (ENT-EAST's STAT cap); off-contract to sourcing
    # first; over budget to finance first, then the spend ladder
    (step,) = _steps(settings, "REQ-STAT")
    assert step[1:5] == ("MANAGER", ["MANAGER"], "PENDING", None)
    assert step[5] - step[6] == dt.timedelta(hours=1)
    assert [s[1] for s in _steps(settings, "REQ-OFF")] == ["SOURCING", "MANAGER"]
    assert [s[1] for s in _steps(settings, "REQ-OVER")] == ["FINANCE", "MANAGER", "DIRECTOR"]

    # the requester is the only manager: nobody else may decide -> fallback queue and an alert
    _refused(cli("approve", "REQ-OWN", "--as", "APR-EAST-MGR"), "segregation of")
    queue = json.loads(_ok(cli("approvals", "list", "--fallback", "--json")))
    assert [(q["requisition_id"], q["status"]) for q in queue] == [("REQ-OWN", "FALLBACK")]
    assert any("approval fallback: requisition REQ-OWN" in r.getMessage() for r in caplog.records)

    # an authority limit below the step's amount is refused, naming both amounts
    _refused(
        cli("approve", "REQ-STAT", "--as", "APR-EAST-MGR2"),
        "may approve up to 1000.0000 USD",
    )

    # decisions: the STAT requisition granted, one denied with its reason
    _ok(cli("approve", "REQ-STAT", "--as", "APR-EAST-MGR"))
    _ok(cli("deny", "REQ-DENY", "--as", "APR-EAST-MGR", "--reason", "not needed"))
    _refused(cli("deny", "REQ-LATE", "--as", "APR-EAST-MGR"), "--reason")

    # the SLA: 25 hours later the routine manager step is overdue and escalates to DIRECTOR;
    # the sweep repeated before the processor applied it escalates once
    run_pipeline(settings, outbound)
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)).isoformat()
    assert "escalated REQ-LATE step 1 to DIRECTOR" in _ok(
        cli("approvals", "escalate", "--now", later)
    )
    _ok(cli("approvals", "escalate", "--now", later))
    run_pipeline(settings, outbound)
    (step,) = _steps(settings, "REQ-LATE")
    assert step[2:4] == (["MANAGER", "DIRECTOR"], "PENDING")
    assert step[5] == dt.datetime.fromisoformat(later) + dt.timedelta(hours=24)
    assert "0 step(s) escalated" in _ok(cli("approvals", "escalate", "--now", later))
    _ok(cli("approve", "REQ-LATE", "--as", "APR-EAST-DIR2"))
    run_pipeline(settings, outbound)

    assert _status(settings, "REQ-DENY") == "DENIED"
    assert _status(settings, "REQ-LATE") == "ORDERED"
    with connect(settings) as conn:
        lanes = conn.execute(
            "SELECT DISTINCT event_type, topic LIKE '%%.critical' FROM outbox"
            " WHERE correlation_id = 'REQ-STAT' ORDER BY 1"
        ).fetchall()
        (po_number, po_priority) = conn.execute(
            "SELECT po_number, priority FROM purchase_orders WHERE requisition_id = 'REQ-STAT'"
        ).fetchone() or ("", "")
        denied_pos = conn.execute(
            "SELECT count(*) FROM purchase_orders WHERE requisition_id = 'REQ-DENY'"
        ).fetchone()
    # priority stays with the business transaction: the STAT chain travels on critical lanes,
    # but for the budget (finance.budget.v1 has none: a cost center's key would change lanes)
    assert dict(lanes) == {
        "ApprovalGranted": True, "ApprovalRequested": True, "BudgetCommitted": False,
        "PurchaseOrderIssued": True, "RequisitionApproved": True, "RequisitionValidated": True,
    }  # fmt: skip
    assert po_priority == "CRITICAL"
    assert denied_pos == (0,)

    # cancellation releases the commitment
    def committed() -> Decimal:
        spend = json.loads(_ok(cli("spend", "--cost-center", "CC-E1-SURG", "--json")))
        period = f"{TODAY.year:04d}-{TODAY.month:02d}"
        return Decimal(next(r["committed"] for r in spend if r["period"] == period))

    before = committed()
    po = json.loads(_ok(cli("show", "po", po_number, "--json")))
    _ok(cli("po", "cancel", po_number, "--reason", "patient transferred"))
    _refused(cli("po", "cancel", "PO-NOPE-1", "--reason", "x"), "not known")
    run_pipeline(settings, outbound)
    assert committed() == before - Decimal(po["total"])
    assert _status(settings, "REQ-STAT") == "CANCELLED"
    shown = json.loads(_ok(cli("show", "po", po_number, "--json")))
    assert shown["status"] == "CANCELLED" and shown["cancelled_reason"] == "patient transferred"
    assert _ok(cli("audit", "verify"))
