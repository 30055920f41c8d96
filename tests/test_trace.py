"""`supplybus trace` (issue 19, acceptance 6): a requisition-to-PO transaction traced hop by hop
in causal order, each event applied by the processors that consume it; a stuck requisition
(an unknown item: dead letter, key held) whose "stuck?" section names the dead letter and the
held event; an unknown correlation id; and the tree assembly's invariants as properties."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.masterdata.processor import processor as masterdata
from supplybus.consumers.procurement.processor import requisitions
from supplybus.consumers.runtime.runner import Runner
from supplybus.events.envelope import deterministic_id
from supplybus.ops.trace_model import (
    Applied,
    DeadLetter,
    Emitted,
    Facts,
    Held,
    assemble,
    delta,
    explain,
)
from supplybus.producers.publisher import Publisher
from tests.helpers import InProcessCli
from tests.requisition_data import SAMPLE, VALID, line
from tests.test_requisition_to_po import run_pipeline, two_supplier_requisition
from tests.workers import fresh_group

RID = "REQ-TRACE-1"
T0 = dt.datetime(2025, 1, 6, 8, tzinfo=dt.UTC)


def _json(result: Any) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_trace_of_a_requisition_to_purchase_orders(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    outbound = tmp_path / "outbound"
    outbound.mkdir()
    with Publisher.from_settings(settings) as pub:
        pub.publish_all(SAMPLE)
    run_pipeline(settings, outbound)
    submitted = two_supplier_requisition(RID, Decimal(1500))  # ENT-EAST: one MANAGER step
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([submitted])
    run_pipeline(settings, outbound)

    waiting = _json(cli("trace", RID, "--json"))
    assert waiting["stuck"]["stuck"] is False
    assert any(
        f"{RID} waits for approval step 1 (MANAGER" in s for s in waiting["stuck"]["summary"]
    )

    assert cli("approve", RID, "--as", "APR-EAST-MGR").returncode == 0
    run_pipeline(settings, outbound)
    found = _json(cli("trace", RID, "--json"))

    events = found["events"]
    position = {e["event_id"]: n for n, e in enumerate(events)}
    assert len(position) == len(events), "each event once"
    for e in events:  # causal order: every event after the event that caused it
        if e["depth"]:
            parent = events[position[e["causation_id"]]]
            assert position[parent["event_id"]] < position[e["event_id"]]
            assert e["depth"] == parent["depth"] + 1
            assert e["at"] >= parent["at"]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_type.setdefault(e["event_type"], []).append(e)
    assert {t: len(es) for t, es in by_type.items()} == {
        "RequisitionSubmitted": 1,
        "RequisitionValidated": 1,
        "ApprovalRequested": 1,
        "ApprovalGranted": 1,
        "RequisitionApproved": 1,
        "PurchaseOrderIssued": 2,
        "BudgetCommitted": 2,
    }
    (root,) = by_type["RequisitionSubmitted"]
    assert found["roots"] == [root["event_id"]] == [submitted["envelope"]["event_id"]]
    assert root["emitted_by"] is None and root["depth"] == 0, "published by the source system"

    def chain(event: dict[str, Any]) -> list[str]:
        path = [event["event_type"]]
        while event["depth"]:
            event = events[position[event["causation_id"]]]
            path.append(event["event_type"])
        return path[::-1]

    assert chain(by_type["ApprovalRequested"][0]) == [
        "RequisitionSubmitted", "RequisitionValidated", "ApprovalRequested",
    ]  # fmt: skip
    granted_path = ["RequisitionSubmitted", "ApprovalGranted", "RequisitionApproved"]
    for kind in ("PurchaseOrderIssued", "BudgetCommitted"):
        assert all(chain(e) == [*granted_path, kind] for e in by_type[kind])
    assert all(a["delta"].startswith("+") for e in events for a in e["applied_by"])

    def appliers(kind: str) -> set[str]:
        return {a["processor"] for e in by_type[kind] for a in e["applied_by"]}

    assert appliers("RequisitionSubmitted") == {"requisitions"}
    assert appliers("RequisitionValidated") == {"approvals"}
    assert appliers("ApprovalGranted") == {"approvals"}
    assert appliers("RequisitionApproved") == {"purchase-orders"}
    assert appliers("BudgetCommitted") == {"budget-spend"}
    emitters = {t: {e["emitted_by"] for e in es} for t, es in by_type.items()}
    assert emitters["RequisitionValidated"] == {"requisitions"}
    assert emitters["ApprovalGranted"] == {"supplybus.approvals.cli"}
    assert emitters["PurchaseOrderIssued"] == emitters["BudgetCommitted"] == {"purchase-orders"}
    assert {a["action"] for a in root["audit"]} == {"validated"}

    assert found["stuck"]["stuck"] is False and not found["stuck"]["unapplied"]
    assert found["status"][0].startswith(f"requisition {RID} ORDERED")
    assert sum(s.startswith("PO PO-EAST-") for s in found["status"]) == 2
    (summary,) = found["stuck"]["summary"]
    assert summary.startswith(f"nothing stuck: requisition {RID} ORDERED")
    assert summary.endswith(f"({len(events)} events)")

    text = cli("trace", RID)
    assert text.returncode == 0, text.stderr
    tree = text.stdout
    hops = ["RequisitionSubmitted", "RequisitionValidated", "ApprovalRequested",
            "ApprovalGranted", "RequisitionApproved"]  # fmt: skip
    assert [tree.index(h) for h in hops] == sorted(tree.index(h) for h in hops)
    assert "PurchaseOrderIssued" in tree and "BudgetCommitted" in tree
    assert "applied by" in tree and "stuck? no" in tree

    unknown = cli("trace", "NO-SUCH-CORRELATION")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.strip().count("\n") == 0 and "NO-SUCH-CORRELATION" in unknown.stderr
    assert "Traceback" not in unknown.stderr


def _submitted(rid: str, lines: list[dict[str, Any]], n: int) -> dict[str, Any]:
    record = two_supplier_requisition(rid, Decimal(10))
    record["lines"] = lines
    total = sum((ln["quantity"]["value"] * ln["unit_price"]["amount"] for ln in lines), Decimal(0))
    record["total"] = {"amount": total, "currency": "USD"}
    record["envelope"]["event_id"] = deterministic_id("test-trace", rid, n)
    return record


def test_trace_names_the_dead_letter_and_the_held_event(
    isolated: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = fresh_group(isolated)
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    item, price = VALID[0]
    unknown = line(1, item, price)
    unknown["item_id"] = "ITEM-9999"
    missing = _submitted("REQ-STUCK", [unknown], 1)
    later = _submitted("REQ-STUCK", [line(1, item, price)], 2)
    with Publisher.from_settings(settings) as pub:
        pub.publish_all([*SAMPLE, missing, later])
    runner = Runner(settings, [masterdata, requisitions()], until_idle=1.5, signals=False)
    assert runner.run() == 0

    found = _json(cli("trace", "REQ-STUCK", "--json"))
    stuck = found["stuck"]
    assert stuck["stuck"] is True
    (dead,) = stuck["dead_letters"]
    assert (dead["processor"], dead["status"], dead["held_behind"]) == ("requisitions", "open", 1)
    assert dead["event_id"] == missing["envelope"]["event_id"] and "ITEM-9999" in dead["message"]
    (held,) = stuck["held"]
    assert held["event_id"] == later["envelope"]["event_id"]
    assert (held["processor"], held["key"], held["waits_on"]) == (
        "requisitions", "REQ-STUCK", [dead["dead_letter_id"]],
    )  # fmt: skip
    assert not stuck["unapplied"] and not stuck["unsent"]
    first, second = stuck["summary"]
    assert first.startswith(f"dead letter {dead['dead_letter_id'][:8]} at requisitions: ")
    assert "ITEM-9999" in first and first.endswith("1 event(s) held behind it")
    assert second == (
        f"RequisitionSubmitted {later['envelope']['event_id'][:8]} held at requisitions"
        f" (key REQ-STUCK) behind dead letter {dead['dead_letter_id'][:8]}"
    )
    assert [e["event_id"] for e in found["events"]] == [
        missing["envelope"]["event_id"], later["envelope"]["event_id"],
    ], "two roots published by the source system, in the order they arrived"  # fmt: skip
    assert all(e["event_type"] == "RequisitionSubmitted" for e in found["events"])

    # the workbench's log of the dead letter is read (written here as `dlq replay` would)
    with connect(settings) as conn:
        conn.execute(
            "INSERT INTO dead_letter_log (dead_letter_id, actor, action, outcome, correlation_id)"
            " VALUES (%s, 'nurse', 'dry-run', 'would-fail', 'REQ-STUCK')",
            (dead["dead_letter_id"],),
        )
        conn.commit()
    again = _json(cli("trace", "REQ-STUCK", "--json"))
    (logged,) = again["events"][0]["dead_letters"][0]["log"]
    assert (logged["actor"], logged["action"], logged["outcome"]) == (
        "nurse", "dry-run", "would-fail",
    )  # fmt: skip

    text = cli("trace", "REQ-STUCK")
    assert text.returncode == 0, text.stderr
    assert "✗ dead letter" in text.stdout and "⏸ held" in text.stdout
    assert "stuck? yes" in text.stdout and "dry-run by nurse" in text.stdout


def test_trace_before_migrations_says_what_to_run(
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = InProcessCli(settings, tmp_path / "home", monkeypatch, capsys)
    result = cli("trace", "REQ-1")
    assert result.returncode == 2 and "supplybus db migrate" in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr


# -- the assembly, pure ---------------------------------------------------------------------


def test_delta_formats() -> None:
    assert [delta(T0 + dt.timedelta(seconds=s), T0) for s in (0.042, 12.34, 303, 7800, 273600)] == [
        "+0.042s", "+12.3s", "+5m03s", "+2h10m", "+3d04h",
    ]  # fmt: skip
    assert delta(None, T0) == "+?"


def test_unapplied_and_unsent_events_are_named() -> None:
    emitted = [
        Emitted("a", "RequisitionValidated", "t", "requisitions", "r", T0, T0, None),
        Emitted("b", "RequisitionApproved", "t", "approvals", "a", T0, None, None),
    ]
    facts = Facts(
        correlation_id="REQ-X",
        emitted=emitted,
        applied={"r": [Applied("requisitions", T0)]},
        known_types={"r": "RequisitionSubmitted"},
        consumers={
            "requisitions": ("RequisitionSubmitted",),
            "approvals": ("RequisitionValidated",),
            "purchase-orders": ("RequisitionApproved",),
        },
        registered=frozenset({"requisitions"}),
    )
    trace = assemble(facts)
    assert [n.event_id for n in trace.nodes.values()] == ["r", "a", "b"]
    assert explain(trace) == [
        "RequisitionApproved b from approvals waits in the outbox (is the relay running?)",
        "RequisitionValidated a not yet applied by approvals (approvals never ran here)",
    ]


@st.composite
def forests(draw: st.DrawFn) -> list[Emitted]:
    """Emitted events whose causes are earlier events or outside roots, in a random order."""
    n = draw(st.integers(1, 25))
    events: list[Emitted] = []
    for i in range(n):
        cause = draw(st.one_of(st.none(), st.integers(0, i - 1) if i else st.none()))
        at = T0 + dt.timedelta(seconds=draw(st.integers(0, 3)) + i)
        causation = f"e{cause}" if cause is not None else draw(st.sampled_from(["x", "y", None]))
        events.append(Emitted(f"e{i}", f"T{i % 3}", "t", "p", causation, at, at, None))
    return draw(st.permutations(events))


@given(forests())
def test_every_event_once_and_after_its_cause(emitted: list[Emitted]) -> None:
    trace = assemble(Facts(correlation_id="c", emitted=emitted))
    order = list(trace.nodes)
    expected = {e.event_id for e in emitted} | {e.causation_id for e in emitted if e.causation_id}
    assert sorted(order) == sorted(expected)
    for n in trace.nodes.values():
        if n.depth:
            assert n.causation_id is not None
            assert order.index(n.causation_id) < order.index(n.event_id)
            assert trace.nodes[n.causation_id].depth == n.depth - 1
        else:
            assert n.event_id in trace.roots
    assert trace.started_at == min(e.created_at for e in emitted)


def test_a_held_event_behind_another_transactions_dead_letter_says_why() -> None:
    other = DeadLetter(
        "d" * 32, "approvals", None, None, "t", "REQ-Y", "BUSINESS_RULE", "step 3 unknown",
        "open", 1, T0, 1,
    )  # fmt: skip
    held = Held("approvals", "h", "ApprovalGranted", "t", "REQ-Y", T0, (other.dead_letter_id,))
    trace = assemble(Facts(correlation_id="c", held=[held], foreign={other.dead_letter_id: other}))
    assert explain(trace) == [
        "ApprovalGranted h held at approvals (key REQ-Y) behind dead letter dddddddd "
        "(step 3 unknown)"
    ]
    assert trace.stuck.held == (held,) and bool(trace.stuck)


def test_a_dead_letter_without_event_id_is_kept_and_explained() -> None:
    bad = DeadLetter(
        "e" * 32, "requisitions", None, None, "t", None, "DECODE", "bad framing", "open", 3,
        T0, 0,
    )  # fmt: skip
    trace = assemble(Facts(correlation_id="c", dead_letters=[bad]))
    assert trace.nodes == {} and trace.undecoded == (bad,) and trace.started_at == T0
    assert explain(trace) == ["dead letter eeeeeeee at requisitions: bad framing"]
