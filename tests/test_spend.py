"""The budget-spend processor on the real broker and database: budget events published to
finance.budget.v1 and applied over the sample master data; budget_spend, `supplybus spend
--json` and the audit trail agree with the events; a redelivery counts once; an over-release,
another currency and an unknown cost center are dead-lettered without changing the numbers,
and the over-released cost center's later event is held."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers import audit
from supplybus.consumers.finance.processor import processor as budget_spend
from supplybus.consumers.finance.queries import spend_of
from supplybus.consumers.finance.spend import Spend, entry_of, totals
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import deterministic_id, new_envelope
from supplybus.ops.cli import main
from supplybus.producers.publisher import Publisher
from tests.helpers import cli_env
from tests.requisition_data import SAMPLE
from tests.workers import fresh_group

Record = dict[str, Any]
P, Q = "2026-11", "2026-12"  # the sample's budget periods (tests.requisition_data.TODAY)
SURG, PHARM, RES = "CC-E1-SURG", "CC-E2-PHARM", "CC-E1-RES"


def budget_event(
    n: int,
    event_type: str,
    center: str,
    reference: str,
    amount: str,
    period: str = P,
    currency: str = "USD",
) -> Record:
    envelope = new_envelope(
        event_type,
        source_system="test-finance",
        entity_id="ENT-EAST",
        actor=f"buyer-{n}",
        correlation_id=reference,
        event_id=deterministic_id("test-spend", str(n)),
    )
    record: Record = {
        "envelope": envelope,
        "cost_center_id": center,
        "period": period,
        "amount": {"amount": Decimal(amount), "currency": currency},
        "reference_id": reference,
        "reference_type": "PURCHASE_ORDER",
    }
    if event_type == "BudgetReleased":
        record["reason"] = "PO_CANCELLED"
    return record


def _run(settings: Settings, *processors: Any) -> None:
    assert Runner(settings, list(processors), until_idle=1.5, signals=False).run() == 0


def _spend_table(settings: Settings) -> dict[tuple[str, str], tuple[Spend, str, int]]:
    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT cost_center_id, period, committed, actual, currency, entries FROM budget_spend"
        ).fetchall()
    return {(c, p): (Spend(k, a), cur, n) for c, p, k, a, cur, n in rows}


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["spend", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def on_services(isolated: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The in-process CLI pointed at the test's broker, database and catalog."""
    for name, value in cli_env(isolated, tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    return isolated


def test_budget_events_make_committed_and_actual_spend(
    on_services: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = fresh_group(on_services)
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    _run(settings, masterdata)

    applied = [
        budget_event(1, "BudgetCommitted", SURG, "PO-1", "1000.0000"),
        budget_event(2, "BudgetCommitted", SURG, "PO-2", "250.5000"),
        budget_event(3, "BudgetActualized", SURG, "PO-1", "600"),
        budget_event(4, "BudgetReleased", SURG, "PO-1", "400"),
        budget_event(5, "BudgetCommitted", SURG, "PO-3", "99.9999", period=Q),
        budget_event(6, "BudgetCommitted", RES, "PO-BIG", "100000"),
    ]
    over_release = budget_event(7, "BudgetReleased", SURG, "PO-2", "250.5001")
    held = budget_event(8, "BudgetCommitted", SURG, "PO-4", "10")
    euros = budget_event(9, "BudgetCommitted", PHARM, "PO-5", "10", currency="EUR")
    unknown = budget_event(10, "BudgetCommitted", "CC-NOPE", "PO-6", "10")
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([*applied[:2], copy.deepcopy(applied[0]), *applied[2:]])
        pub.publish_all([over_release, held, euros, unknown])
    _run(settings, budget_spend)

    expected = {
        (SURG, P): (Spend(Decimal("250.5"), Decimal("600")), "USD", 4),
        (SURG, Q): (Spend(Decimal("99.9999"), Decimal(0)), "USD", 1),
        (RES, P): (Spend(Decimal("100000"), Decimal(0)), "USD", 1),
    }
    oracle = totals(entry_of(r["envelope"]["event_type"], r) for r in applied)
    assert {account: spend for account, (spend, _, _) in expected.items()} == oracle
    assert _spend_table(settings) == expected

    with connect(settings) as conn:
        dead = conn.execute(
            "SELECT event_id::text, message FROM dead_letters WHERE processor = 'budget-spend'"
            " ORDER BY event_id"
        ).fetchall()
        holds = conn.execute(
            "SELECT key FROM key_holds WHERE processor = 'budget-spend' ORDER BY key"
        ).fetchall()
        waiting = conn.execute(
            "SELECT event_id::text FROM held_events WHERE processor = 'budget-spend'"
        ).fetchall()
        (entries,) = conn.execute("SELECT count(*) FROM budget_entries").fetchone() or (0,)
        assert spend_of(conn, [SURG, PHARM], P) == {
            SURG: Spend(Decimal("250.5"), Decimal("600")),
            PHARM: Spend(),
        }
        trail = audit.history(conn, f"{SURG}/{P}", "budget")
        assert audit.verify(conn).intact
    messages = dict(dead)
    assert messages == {
        over_release["envelope"]["event_id"]: "cannot release 250.5001 USD of PURCHASE_ORDER "
        f"PO-2 on {SURG} {P}: only 250.5000 is committed for it",
        euros["envelope"]["event_id"]: "committed amount of PURCHASE_ORDER PO-5 is in EUR; "
        f"cost center {PHARM} budgets in USD",
        unknown["envelope"]["event_id"]: "committed 10.0000 USD of PURCHASE_ORDER PO-6 on CC-NOPE "
        f"{P}: cost center CC-NOPE is not in the master data; replay it once the master data "
        "has it",
    }
    assert sorted(bytes(k).decode() for (k,) in holds) == sorted(["CC-NOPE", PHARM, SURG])
    assert waiting == [(held["envelope"]["event_id"],)], "SURG's later event waits"
    assert entries == len(applied)
    assert [(r.entry.action, r.entry.actor, r.entry.reason) for r in trail] == [
        ("committed", "buyer-1", "PURCHASE_ORDER PO-1"),
        ("committed", "buyer-2", "PURCHASE_ORDER PO-2"),
        ("actualized", "buyer-3", "PURCHASE_ORDER PO-1"),
        ("released", "buyer-4", "PURCHASE_ORDER PO-1: PO_CANCELLED"),
    ]
    assert trail[3].entry.detail == {
        "amount": "400.0000",
        "currency": "USD",
        "reference_type": "PURCHASE_ORDER",
        "reference_id": "PO-1",
    }

    # a redelivery of every applied event (the same ids) changes nothing
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(copy.deepcopy(applied))
    _run(settings, budget_spend)
    assert _spend_table(settings) == expected
    with connect(settings) as conn:
        assert audit.history(conn, f"{SURG}/{P}", "budget") == trail

    # the CLI shows the same numbers: budget from the master data, amounts as exact strings
    code, out, err = _cli(capsys, "--cost-center", SURG, "--json")
    assert (code, err) == (0, "")
    rows = {r["period"]: r for r in json.loads(out)}
    budget = Decimal(rows[P]["budget"])
    assert rows[P] == {
        "cost_center_id": SURG,
        "name": "FAC-E1 surg",
        "period": P,
        "budget": rows[P]["budget"],
        "committed": "250.5000",
        "actual": "600.0000",
        "available": str(budget - Decimal("850.5")),
        "used_percent": str((Decimal("85050") / budget).quantize(Decimal("0.1"))),
        "over_budget": False,
        "currency": "USD",
    }
    assert (rows[Q]["committed"], rows[Q]["actual"]) == ("99.9999", "0.0000")
    code, out, _ = _cli(capsys, "--period", P, "--json")
    by_center = {r["cost_center_id"]: r for r in json.loads(out)}
    assert len(by_center) == 12, "every cost center of the period, spend or not"
    assert by_center[RES]["over_budget"] is True
    assert Decimal(by_center[RES]["available"]) < 0
    assert (by_center[PHARM]["committed"], by_center[PHARM]["actual"]) == ("0.0000", "0.0000")
    code, out, _ = _cli(capsys, "--period", P)
    assert code == 0
    res_line = next(line for line in out.splitlines() if RES in line)
    assert "OVER" in res_line and "100,000.00" in res_line
    assert "OVER" not in next(line for line in out.splitlines() if SURG in line)


def test_spend_cli_refuses_a_malformed_period_and_an_unknown_cost_center(
    migrated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in cli_env(migrated, tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    code, out, err = _cli(capsys, "--period", "2026-13")
    assert (code, out) == (2, "")
    assert err == "error: --period: expected YYYY-MM (e.g. 2026-11), got '2026-13'\n"
    code, out, err = _cli(capsys, "--cost-center", "CC-NOPE", "--period", P)
    assert (code, out) == (2, "")
    assert err.startswith("error: --cost-center: 'CC-NOPE' is not a known cost center")
    assert len(err.splitlines()) == 1
    code, out, _ = _cli(capsys, "--json")
    assert (code, json.loads(out)) == (0, [])
    code, out, _ = _cli(capsys)
    assert (code, out.strip()) == (0, "no budget or spend recorded")
