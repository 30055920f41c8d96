"""requisitions: RequisitionSubmitted -> RequisitionValidated or RequisitionRejected.

Per batch, in the handler's transaction: the master data the batch refers to is read
set-based (suppliers, items, their units and contract prices, cost centers with their
budgets: five queries whatever the batch size), the pure rules of ``validation`` are applied,
and each requisition gets one event (``caused_by(..., emitter="requisitions",
discriminator=requisition_id)``, so a re-run emits the same id) and one audit entry.

Each requisition is stored in ``requisitions`` (header, lines placed at a supplier and price by
``sourcing.place``, status, route): the approvals and purchase-orders processors read it. A
requisition id submitted again is rejected (``DUPLICATE_REQUISITION``) unless the first
submission was rejected: an amendment is a new requisition.

A valid requisition is routed with ``approvals.route`` under its entity's and facility's
effective policy (the published set in force, ``approvals.published``).
RequisitionValidated has no field for the route, so the audit entry records it: the rules of
each step (``rule_ids``), the policy ids and versions (``rule_version``, ``id@v,...``) and the
whole route as JSON (``detail["route"]``).

Missing master data is not a rejection: a requisition naming an item the item master does not
know (yet) raises ``BusinessRuleError``; the runtime dead-letters it and holds its key
(``on_dead_letter="hold_key"``), and the dead-letter workbench replays it once the master data
has arrived. An unknown supplier or cost center is a rejection reason like any other.

The budget check counts what is committed and spent already (``finance.queries.spend_of``: the
budget-spend read model, fed by BudgetCommitted, BudgetReleased and BudgetActualized).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.approvals.federation import PolicySet
from supplybus.consumers.approvals.published import PoliciesInForce
from supplybus.consumers.approvals.routing import Request, Route, route
from supplybus.consumers.finance.queries import spend_of
from supplybus.consumers.procurement.validation import (
    UNKNOWN_ITEM,
    ContractPrice,
    CostCenter,
    Finding,
    Item,
    MasterData,
    Reason,
    Supplier,
    budget_period,
    validate,
)
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError
from supplybus.events.envelope import caused_by

Row = dict[str, Any]
NAME = "requisitions"
ENTITY_TYPE = "requisition"


def requisitions(policies: PolicySet | None = None) -> Processor:
    """The processor, with ``policies`` (default: the published set in force, else the
    shipped files: ``PoliciesInForce``)."""
    in_force = PoliciesInForce(policies)

    def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
        policy_set = policies if policies is not None else in_force(conn)
        records = [e.record for e in events]
        master = read_master(conn, records)
        known: dict[str, str] = dict(
            conn.execute(
                "SELECT requisition_id, status FROM requisitions WHERE requisition_id = ANY(%s)",
                (sorted({str(r["requisition_id"]) for r in records}),),
            ).fetchall()
        )
        emitted: list[Record] = []
        entries: list[audit.AuditEntry] = []
        rows: dict[str, Row] = {}
        for record in records:
            rid = str(record["requisition_id"])
            day = submitted_on(record)
            finding = validate(record, master(budget_period(day)), day)
            missing = sorted({r.message for r in finding.reasons if r.code == UNKNOWN_ITEM})
            if missing:
                raise BusinessRuleError(
                    f"requisition {rid}: {'; '.join(missing)}; "
                    "replay it once the item master has it"
                )
            status = known.get(rid)
            if status is not None and status != "REJECTED":
                finding = duplicate(finding, rid, status)
            event, entry, routed = decide(record, finding, policy_set)
            if status is None or status == "REJECTED":
                rows[rid] = requisition_row(record, finding, routed)
                known[rid] = rows[rid]["status"]
            emitted.append(event)
            entries.append(entry)
        save_requisitions(conn, list(rows.values()))
        audit.append(conn, entries)
        return emitted

    return Processor(
        name=NAME,
        consumes=("RequisitionSubmitted",),
        handle=handle,
        description="Validates requisitions against the master data and routes them.",
        on_dead_letter="hold_key",  # an approval must never overtake its requisition
    )


def submitted_on(record: Record) -> dt.date:
    """The day (UTC) a requisition was submitted: its contract prices and budget period."""
    at: dt.datetime = record["envelope"]["occurred_at"]
    return at.astimezone(dt.UTC).date()


def duplicate(finding: Finding, rid: str, status: str) -> Finding:
    """``finding`` with the rejection of a re-submission: a requisition that was not rejected
    is not submitted again (an amendment is a new requisition)."""
    why = Reason(
        "DUPLICATE_REQUISITION",
        "requisition_id",
        f"requisition {rid} was submitted already and is {status.lower().replace('_', ' ')}; "
        "submit a change under a new requisition id",
    )
    return dataclasses.replace(finding, reasons=(*finding.reasons, why))


def decide(
    record: Record, finding: Finding, policies: PolicySet
) -> tuple[Record, audit.AuditEntry, Route | None]:
    """The event, the audit entry and the route (None: rejected) for one requisition."""
    parent, rid = record["envelope"], str(record["requisition_id"])
    routed: Route | None = None
    reasons = list(finding.reasons)
    if not reasons:
        try:
            routed = route_of(record, finding, policies)
        except BusinessRuleError as exc:
            reasons.append(Reason("NOT_ROUTABLE", None, f"approval policy: {exc}"))
    if routed is None:
        event: Record = {
            "envelope": caused_by(parent, "RequisitionRejected", emitter=NAME, discriminator=rid),
            "requisition_id": rid,
            "reasons": [r.as_record() for r in reasons],
        }
        entry = audit.from_envelope(
            parent, entity_type=ENTITY_TYPE, entity_id=rid, action="rejected", actor=NAME,
            reason="; ".join(f"{r.code}: {r.message}" for r in reasons),
            detail={"event_id": event["envelope"]["event_id"],
                    "codes": ",".join(r.code for r in reasons)},
        )  # fmt: skip
        return event, entry, None
    budget = "OVER_BUDGET" if finding.over_budget else "WITHIN_BUDGET"
    event = {
        "envelope": caused_by(parent, "RequisitionValidated", emitter=NAME, discriminator=rid),
        "requisition_id": rid,
        "total": dict(record["total"]),
        "flags": list(finding.flags),
        "budget_status": budget,
    }
    rules = [s.rule for s in routed.steps] or [routed.auto_approved_by or ""]
    entry = audit.from_envelope(
        parent, entity_type=ENTITY_TYPE, entity_id=rid, action="validated", actor=NAME,
        reason=_why(routed, finding),
        rule_ids=[r for r in rules if r],
        rule_version=",".join(f"{p}@{v}" for p, v in routed.policies),
        detail={"event_id": event["envelope"]["event_id"], "flags": ",".join(finding.flags),
                "budget_status": budget, "route": json.dumps(routed.to_json(), sort_keys=True)},
    )  # fmt: skip
    return event, entry, routed


def requisition_row(record: Record, finding: Finding, routed: Route | None) -> Row:
    """The ``requisitions`` row of a validated (or rejected) requisition, with its lines placed
    (supplier and unit price, ``sourcing.place``)."""
    env = record["envelope"]
    lines = []
    for line in record["lines"]:
        placed = finding.placements.get(int(line["line_number"]))
        lines.append({
            "line_number": line["line_number"],
            "item_id": line["item_id"],
            "supplier_id": placed.supplier_id if placed else line.get("supplier_id"),
            "quantity": str(line["quantity"]["value"]),
            "uom": line["quantity"]["uom"],
            "unit_price": str(placed.unit_price if placed else line["unit_price"]["amount"]),
            "requested_price": str(line["unit_price"]["amount"]),
            "currency": line["unit_price"]["currency"],
            "on_contract": bool(placed and placed.on_contract),
            "cost_center_id": line.get("cost_center_id") or record["cost_center_id"],
            "need_by": (line.get("need_by") or record["need_by"]).isoformat(),
        })  # fmt: skip
    return {
        "requisition_id": str(record["requisition_id"]),
        "entity_id": env["entity_id"],
        "facility_id": env.get("facility_id"),
        "requester_id": record["requester_id"],
        "cost_center_id": record["cost_center_id"],
        "urgency": record["urgency"],
        "priority": env.get("priority", "ROUTINE"),
        "need_by": record["need_by"],
        "total": record["total"]["amount"],
        "currency": record["total"]["currency"],
        "status": "VALIDATED" if routed is not None else "REJECTED",
        "flags": list(finding.flags),
        "budget_status": None if routed is None else
        ("OVER_BUDGET" if finding.over_budget else "WITHIN_BUDGET"),
        "reasons": json.dumps([r.as_record() for r in finding.reasons]) if routed is None
        else None,
        "lines": json.dumps(lines),
        "route": json.dumps(routed.to_json(), sort_keys=True) if routed is not None else None,
        "policy_versions": [f"{p}@{v}" for p, v in routed.policies] if routed else [],
        "correlation_id": env["correlation_id"],
        "submitted_at": env["occurred_at"],
        "event_id": str(env["event_id"]),
    }  # fmt: skip


_ROW_COLUMNS = (
    "requisition_id", "entity_id", "facility_id", "requester_id", "cost_center_id", "urgency",
    "priority", "need_by", "total", "currency", "status", "flags", "budget_status", "reasons",
    "lines", "route", "policy_versions", "correlation_id", "submitted_at", "event_id",
)  # fmt: skip
_SAVE = (
    f"INSERT INTO requisitions ({', '.join(_ROW_COLUMNS)}) VALUES "
    f"({', '.join('%(' + c + ')s' for c in _ROW_COLUMNS)})"
    " ON CONFLICT (requisition_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _ROW_COLUMNS[1:])
    + ", updated_at = now() WHERE requisitions.status = 'REJECTED'"
)


def save_requisitions(conn: psycopg.Connection, rows: Sequence[Row]) -> None:
    """Insert the batch's requisitions (a rejected one may be submitted again)."""
    if rows:
        with conn.cursor() as cur:
            cur.executemany(_SAVE, rows)


def route_of(record: Record, finding: Finding, policies: PolicySet) -> Route:
    """The approval route of a requisition that passed validation."""
    envelope = record["envelope"]
    policy = policies.effective(envelope["entity_id"], envelope["facility_id"])
    request = Request.of_requisition(
        record,
        finding.categories,
        off_contract=finding.off_contract,
        over_budget=finding.over_budget,
    )
    return route(request, policy)


def _why(routed: Route, finding: Finding) -> str:
    flags = f" ({', '.join(finding.flags)})" if finding.flags else ""
    if routed.auto_approved:
        return f"valid{flags}; auto-approved by {routed.auto_approved_by}"
    return f"valid{flags}; route: {' > '.join(s.role for s in routed.steps)}"


_SUPPLIERS = "SELECT supplier_id, status, entity_ids FROM suppliers WHERE supplier_id = ANY(%s)"
_ITEMS = "SELECT item_id, gtin, category, base_uom, orderable FROM items WHERE item_id = ANY(%s)"
_UNITS = "SELECT item_id, uom, factor FROM item_units WHERE item_id = ANY(%s)"
_PRICES = (
    "SELECT item_id, supplier_id, uom, amount, currency, valid_from, valid_to"
    " FROM contract_prices WHERE item_id = ANY(%s) ORDER BY item_id, supplier_id, uom, valid_from"
)
_CENTERS = (
    "SELECT c.cost_center_id, c.owning_entity_id, c.status, b.period, b.amount"
    " FROM cost_centers c LEFT JOIN cost_center_budgets b USING (cost_center_id)"
    " WHERE c.cost_center_id = ANY(%s)"
)


class _Snapshot:
    """The batch's master data; ``snapshot(period)`` is it with that period's budgets."""

    def __init__(
        self,
        suppliers: Mapping[str, Supplier],
        items: Mapping[str, Item],
        centers: Mapping[str, tuple[str, str]],
        budgets: Mapping[tuple[str, str], Decimal],
        conn: psycopg.Connection,
    ) -> None:
        self.suppliers, self.items, self.centers, self.budgets = suppliers, items, centers, budgets
        self.conn = conn
        self.by_period: dict[str, MasterData] = {}

    def __call__(self, period: str) -> MasterData:
        found = self.by_period.get(period)
        if found is None:
            spent = spend_of(self.conn, self.centers, period)
            centers = {
                cid: CostCenter(cid, entity, status, self.budgets.get((cid, period)),
                                spent[cid].committed, spent[cid].actual)
                for cid, (entity, status) in self.centers.items()
            }  # fmt: skip
            found = self.by_period[period] = MasterData(self.suppliers, self.items, centers)
        return found


def read_master(conn: psycopg.Connection, records: Sequence[Record]) -> _Snapshot:
    """Everything ``records`` refer to, read in five set-based queries (and one per budget
    period for committed and actual spend)."""
    supplier_ids, item_ids, center_ids = set(), set(), set()
    for r in records:
        center_ids.add(r["cost_center_id"])
        for line in r["lines"]:
            item_ids.add(line["item_id"])
            if line.get("supplier_id"):
                supplier_ids.add(line["supplier_id"])
            if line.get("cost_center_id"):
                center_ids.add(line["cost_center_id"])
    suppliers = {
        sid: Supplier(sid, status, frozenset(entities))
        for sid, status, entities in conn.execute(_SUPPLIERS, (sorted(supplier_ids),))
    }
    wanted = sorted(item_ids)
    units: dict[str, dict[str, Decimal]] = {}
    for iid, uom, factor in conn.execute(_UNITS, (wanted,)):
        units.setdefault(iid, {})[uom] = factor
    prices: dict[str, list[ContractPrice]] = {}
    for iid, *price in conn.execute(_PRICES, (wanted,)):
        prices.setdefault(iid, []).append(ContractPrice(*price))
    items = {
        iid: Item(iid, gtin, category, base, orderable,
                  units.get(iid, {base: Decimal(1)}), tuple(prices.get(iid, ())))
        for iid, gtin, category, base, orderable in conn.execute(_ITEMS, (wanted,))
    }  # fmt: skip
    centers: dict[str, tuple[str, str]] = {}
    budgets: dict[tuple[str, str], Decimal] = {}
    for cid, entity, status, period, amount in conn.execute(_CENTERS, (sorted(center_ids),)):
        centers[cid] = (entity, status)
        if period is not None:
            budgets[(cid, period)] = amount
    return _Snapshot(suppliers, items, centers, budgets, conn)
