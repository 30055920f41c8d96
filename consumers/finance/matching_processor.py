"""invoice-match: three-way match of supplier invoices, and their payment authorization.

Consumes PurchaseOrderIssued, PurchaseOrderCancelled (procurement.purchase-orders.v1),
GoodsReceived, ReceivingDiscrepancy (inventory.receipts.v1), InvoiceReceived,
InvoiceExceptionResolved and PaymentHoldReleased (finance.invoices.v1); all keyed by PO, so
``on_dead_letter="hold_key"`` keeps each PO's events in order past a dead letter.

It keeps its own view of each PO (``match_orders``/``match_order_lines``: from the
purchase-orders tables when they have the PO, else from the event) and of what was received
(``match_receipts``: the accepted quantity of each receipt line, in the unit received).
An invoice is stored in ``invoices`` and evaluated by ``matching.evaluate``; one that waits
for its PO or receipts is evaluated again when a PO or receipt of its PO arrives. Whatever
the order of arrival, the events it emits are caused by the invoice's InvoiceReceived, so
their ids are those of in-order delivery.

A match emits InvoiceMatched and, per cost center of the billed PO lines, BudgetActualized
(reference PURCHASE_ORDER, the PO's budget period) — preceded by a BudgetCommitted of the
overrun when the invoice actualizes more than the PO committed there — and then the payment
(``payment.authorize``): PaymentAuthorized unless a hold applies. An exception emits
InvoiceException (v2: CURRENCY). Waiting emits nothing (``supplybus exceptions list`` shows
it). Every change of an invoice is in the audit trail (entity ``invoice``).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import psycopg

from supplybus.consumers import audit
from supplybus.consumers.finance import payment
from supplybus.consumers.finance.matching import (
    ZERO,
    Invoice,
    InvoiceLine,
    Known,
    Order,
    PoLine,
    Verdict,
    actuals,
    evaluate,
    overrun,
    suspected_duplicate,
    tolerance_for,
)
from supplybus.consumers.finance.payment import emitted_envelope
from supplybus.consumers.masterdata.units import ItemUnits, item_units
from supplybus.consumers.procurement.validation import budget_period
from supplybus.consumers.runtime.processor import Event, Processor, Record
from supplybus.errors import BusinessRuleError

NAME = "invoice-match"
ENTITY_TYPE = "invoice"
#: the parts of an envelope kept to emit events caused by it
_PARENT = ("event_id", "entity_id", "facility_id", "correlation_id", "priority")


class Batch:
    """What one batch emits and appends to the audit trail, in order."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn
        self.emitted: list[Record] = []
        self.entries: list[audit.AuditEntry] = []
        self._units: dict[str, ItemUnits] = {}

    def convert(self, item_id: str, quantity: Decimal, from_uom: str, to_uom: str) -> Decimal:
        if from_uom == to_uom:
            return quantity
        units = self._units.get(item_id)
        if units is None:
            units = _item_units(self.conn, item_id)
            self._units[item_id] = units
        return units.convert(quantity, from_uom, to_uom)

    def note(self, env: Mapping[str, Any], invoice_id: str, action: str, reason: str,
             actor: str = NAME, **detail: str) -> None:  # fmt: skip
        self.entries.append(audit.from_envelope(
            env, entity_type=ENTITY_TYPE, entity_id=invoice_id, action=action, actor=actor,
            reason=reason, detail=detail,
        ))  # fmt: skip


def processor() -> Processor:
    return Processor(
        name=NAME,
        consumes=(
            "PurchaseOrderIssued",
            "PurchaseOrderCancelled",
            "GoodsReceived",
            "ReceivingDiscrepancy",
            "InvoiceReceived",
            "InvoiceExceptionResolved",
            "PaymentHoldReleased",
        ),
        handle=handle,
        description="Three-way match of supplier invoices; payment authorization and holds.",
        on_dead_letter="hold_key",
    )


def handle(events: Sequence[Event], conn: psycopg.Connection) -> list[Record]:
    batch = Batch(conn)
    for event in events:
        r, kind = event.record, event.event_type
        if kind == "PurchaseOrderIssued":
            _po_issued(conn, r)
            _reevaluate(batch, str(r["po_id"]), r["envelope"])
        elif kind == "PurchaseOrderCancelled":
            conn.execute(
                "UPDATE match_orders SET status = 'CANCELLED' WHERE po_id = %s", (r["po_id"],)
            )
            _reevaluate(batch, str(r["po_id"]), r["envelope"])
        elif kind == "GoodsReceived":
            _received(conn, r)
            _reevaluate(batch, str(r["po_id"]), r["envelope"])
        elif kind == "ReceivingDiscrepancy":
            conn.execute(
                "INSERT INTO match_discrepancies (event_id, po_id, receipt_id, po_line_number,"
                " kind, note) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (r["envelope"]["event_id"], r["po_id"], r["receipt_id"], r["po_line_number"],
                 r["kind"], r.get("note")),
            )  # fmt: skip
        elif kind == "InvoiceReceived":
            _invoice_received(batch, r)
        elif kind == "InvoiceExceptionResolved":
            _resolved(batch, r)
        else:
            payment.release(batch, r)
    audit.append(conn, batch.entries)
    return batch.emitted


# --- what the matcher knows -------------------------------------------------------------


def _po_issued(conn: psycopg.Connection, r: Record) -> None:
    """The PO and its lines: from the purchase-orders tables when they have it, else from
    the event (a PO from another system: the header's cost center, the period of its date)."""
    po_id, env = str(r["po_id"]), r["envelope"]
    row = conn.execute(
        "INSERT INTO match_orders (po_id, po_number, entity_id, supplier_id, currency,"
        " budget_period, correlation_id)"
        " SELECT po_id, po_number, entity_id, supplier_id, currency, budget_period,"
        " correlation_id FROM purchase_orders WHERE po_id = %s"
        " ON CONFLICT DO NOTHING RETURNING po_id",
        (po_id,),
    ).fetchone()
    if row is not None:
        conn.execute(
            "INSERT INTO match_order_lines (po_id, line_number, item_id, quantity, uom,"
            " unit_price, currency, cost_center_id) SELECT po_id, line_number, item_id,"
            " quantity, uom, unit_price, currency, cost_center_id FROM po_lines"
            " WHERE po_id = %s ON CONFLICT DO NOTHING",
            (po_id,),
        )
        return
    if conn.execute("SELECT 1 FROM match_orders WHERE po_id = %s", (po_id,)).fetchone():
        return
    period = budget_period(env["occurred_at"].astimezone(dt.UTC).date())
    conn.execute(
        "INSERT INTO match_orders (po_id, po_number, entity_id, supplier_id, currency,"
        " budget_period, correlation_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (po_id, r["po_number"], env["entity_id"], r["supplier_id"], r["total"]["currency"],
         period, env["correlation_id"]),
    )  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO match_order_lines (po_id, line_number, item_id, quantity, uom,"
            " unit_price, currency, cost_center_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            [(po_id, ln["line_number"], ln["item_id"], ln["quantity"]["value"],
              ln["quantity"]["uom"], ln["unit_price"]["amount"], ln["unit_price"]["currency"],
              r["cost_center_id"]) for ln in r["lines"]],
        )  # fmt: skip


def accepted_quantity(line: Mapping[str, Any]) -> Decimal:
    """What a receipt line puts into stock: ``quantity_received`` (the schema: "quantity
    accepted into stock"; the rejected quantity is reported beside it, not inside it)."""
    value: Decimal = line["quantity_received"]["value"]
    return value


def _received(conn: psycopg.Connection, r: Record) -> None:
    rows = [
        (r["receipt_id"], ln["po_line_number"], r["po_id"], ln["item_id"], accepted_quantity(ln),
         ln["quantity_received"]["uom"], r["envelope"]["event_id"])
        for ln in r["lines"]
    ]  # fmt: skip
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO match_receipts (receipt_id, po_line_number, po_id, item_id, accepted,"
            " uom, event_id) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            rows,
        )


def _item_units(conn: psycopg.Connection, item_id: str) -> ItemUnits:
    row = conn.execute("SELECT base_uom FROM items WHERE item_id = %s", (item_id,)).fetchone()
    if row is None:
        raise BusinessRuleError(
            f"item {item_id} is not in the item master: its units cannot be converted"
        )
    factors = conn.execute(
        "SELECT uom, factor FROM item_units WHERE item_id = %s", (item_id,)
    ).fetchall()
    return item_units(item_id, row[0], [(u, Decimal(f)) for u, f in factors])


def load_order(conn: psycopg.Connection, po_id: str) -> Order | None:
    head = conn.execute(
        "SELECT supplier_id, currency, status FROM match_orders WHERE po_id = %s", (po_id,)
    ).fetchone()
    if head is None:
        return None
    lines = {
        n: PoLine(n, item, Decimal(q), uom, Decimal(p), center)
        for n, item, q, uom, p, center in conn.execute(
            "SELECT line_number, item_id, quantity, uom, unit_price, cost_center_id"
            " FROM match_order_lines WHERE po_id = %s",
            (po_id,),
        )
    }
    return Order(po_id, head[0], head[1], head[2] == "CANCELLED", lines)


def _received_per_line(batch: Batch, order: Order) -> dict[int, Decimal]:
    """Accepted quantity per PO line, converted to the PO line's unit."""
    found: dict[int, Decimal] = {}
    for n, item, quantity, uom in batch.conn.execute(
        "SELECT po_line_number, item_id, accepted, uom FROM match_receipts WHERE po_id = %s"
        " ORDER BY receipt_id, po_line_number",
        (order.po_id,),
    ):
        line = order.lines.get(n)
        if line is None or line.item_id != item:
            continue  # no such PO line, or another item (WRONG_ITEM): nothing to bill
        found[n] = found.get(n, ZERO) + batch.convert(item, Decimal(quantity), uom, line.uom)
    return found


# --- invoices ----------------------------------------------------------------------------

_INVOICE_COLUMNS = (
    "invoice_id, invoice_number, supplier_id, po_id, invoice_date, total, currency, lines,"
    " received_at, status"
)


def _invoice_of(row: Sequence[Any]) -> tuple[Invoice, str]:
    iid, number, supplier, po_id, date, total, currency, lines, at, status = row
    return Invoice(
        iid, number, supplier, po_id, date, Decimal(total), currency,
        tuple(
            InvoiceLine(ln["line_number"], ln["po_line_number"], ln["item_id"],
                        Decimal(ln["quantity"]), ln["uom"], Decimal(ln["unit_price"]),
                        ln["currency"])
            for ln in lines
        ),
        at,
    ), status  # fmt: skip


def _invoice_received(batch: Batch, r: Record) -> None:
    env, iid = r["envelope"], str(r["invoice_id"])
    lines = [
        {"line_number": ln["line_number"], "po_line_number": ln["po_line_number"],
         "item_id": ln["item_id"], "quantity": str(ln["quantity"]["value"]),
         "uom": ln["quantity"]["uom"], "unit_price": str(ln["unit_price"]["amount"]),
         "currency": ln["unit_price"]["currency"]}
        for ln in r["lines"]
    ]  # fmt: skip
    parent = {k: env.get(k) for k in _PARENT}
    inserted = batch.conn.execute(
        "INSERT INTO invoices (invoice_id, invoice_number, supplier_id, po_id, entity_id,"
        " invoice_date, total, currency, lines, envelope, status, received_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, 'WAITING', %s)"
        " ON CONFLICT DO NOTHING RETURNING invoice_id",
        (iid, r["invoice_number"], r["supplier_id"], r["po_id"], env["entity_id"],
         r["invoice_date"], r["total"]["amount"], r["total"]["currency"], json.dumps(lines),
         json.dumps({k: str(v) if v is not None else None for k, v in parent.items()}),
         env["occurred_at"]),
    ).fetchone()  # fmt: skip
    if inserted is None:
        return  # the same invoice sent again under another event id: already on record
    batch.note(env, iid, "received", f"invoice {r['invoice_number']} of {r['supplier_id']} for "
               f"PO {r['po_id']}: {r['total']['amount']} {r['total']['currency']}",
               actor=str(env["actor"]))  # fmt: skip
    _evaluate(batch, iid, env)


def _reevaluate(batch: Batch, po_id: str, env: Mapping[str, Any]) -> None:
    """Evaluate again each invoice of ``po_id`` that waits, oldest first."""
    waiting = batch.conn.execute(
        "SELECT invoice_id FROM invoices WHERE po_id = %s AND status = 'WAITING'"
        " ORDER BY received_at, invoice_id",
        (po_id,),
    ).fetchall()
    for (iid,) in waiting:
        _evaluate(batch, iid, env)


def _load(conn: psycopg.Connection, iid: str) -> tuple[Invoice, str, dict[str, Any], str]:
    row = conn.execute(
        f"SELECT {_INVOICE_COLUMNS}, envelope, entity_id FROM invoices WHERE invoice_id = %s"
        " FOR UPDATE",
        (iid,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"invoice {iid} is not known")
    invoice, status = _invoice_of(row[:10])
    return invoice, status, dict(row[10]), str(row[11])


def _evaluate(batch: Batch, iid: str, trigger: Mapping[str, Any]) -> None:
    conn = batch.conn
    invoice, _status, parent, entity = _load(conn, iid)
    order = load_order(conn, invoice.po_id)
    others = _others(conn, invoice)
    received = _received_per_line(batch, order) if order else {}
    before = _invoiced_before(batch, order, iid) if order else {}
    verdict = evaluate(
        invoice, order, received, before, others, batch.convert, tolerance_for(entity)
    )
    reasons = json.dumps([r.as_json() for r in verdict.reasons])
    conn.execute(
        "UPDATE invoices SET status = %s, reasons = %s::jsonb, duplicate_of = %s,"
        " updated_at = now() WHERE invoice_id = %s",
        (verdict.status, reasons, verdict.duplicate_of, iid),
    )
    why = "; ".join(f"{r.code}: {r.message}" for r in verdict.reasons)
    if verdict.status == "WAITING":
        batch.note(trigger, iid, "waiting", why)
    elif verdict.status == "EXCEPTION":
        batch.emitted.append({
            "envelope": emitted_envelope(parent, "InvoiceException", iid),
            "invoice_id": iid,
            "po_id": invoice.po_id,
            "reasons": [r.as_json() for r in verdict.reasons],
        })  # fmt: skip
        batch.note(trigger, iid, "exception", why)
    else:
        settle(batch, invoice, parent, verdict, trigger, NAME)


def _others(conn: psycopg.Connection, invoice: Invoice) -> list[Known]:
    """The supplier's other invoices (to find duplicates)."""
    return [
        Known(*_invoice_of(row))
        for row in conn.execute(
            f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE supplier_id = %s AND invoice_id <> %s",
            (invoice.supplier_id, invoice.invoice_id),
        )
    ]


def _invoiced_before(batch: Batch, order: Order, iid: str) -> dict[int, Decimal]:
    """What the PO's matched invoices (other than ``iid``) billed per PO line, in its unit."""
    found: dict[int, Decimal] = {}
    rows = batch.conn.execute(
        f"SELECT {_INVOICE_COLUMNS} FROM invoices WHERE po_id = %s AND status = 'MATCHED'"
        " AND invoice_id <> %s",
        (order.po_id, iid),
    ).fetchall()
    for row in rows:
        invoice, _ = _invoice_of(row)
        for line in invoice.lines:
            po_line = order.lines.get(line.po_line_number)
            if po_line is not None:
                q = batch.convert(line.item_id, line.quantity, line.uom, po_line.uom)
                found[line.po_line_number] = found.get(line.po_line_number, ZERO) + q
    return found


def settle(
    batch: Batch,
    invoice: Invoice,
    parent: Mapping[str, Any],
    verdict: Verdict,
    trigger: Mapping[str, Any],
    actor: str,
) -> None:
    """A matched invoice: InvoiceMatched, the budget moved to actual, the payment."""
    conn, iid = batch.conn, invoice.invoice_id
    total = invoice.lines_total
    conn.execute(
        "UPDATE invoices SET status = 'MATCHED', tolerance_applied = %s, matched_total = %s,"
        " updated_at = now() WHERE invoice_id = %s",
        (verdict.tolerance_applied, total, iid),
    )
    batch.emitted.append({
        "envelope": emitted_envelope(parent, "InvoiceMatched", iid),
        "invoice_id": iid,
        "po_id": invoice.po_id,
        "matched_total": {"amount": total, "currency": invoice.currency},
        "tolerance_applied": verdict.tolerance_applied,
    })  # fmt: skip
    _actualize(batch, invoice, parent, verdict.actuals)
    batch.note(trigger, iid, "matched", f"{total} {invoice.currency}" + (
        " (within tolerance)" if verdict.tolerance_applied else ""), actor=actor)  # fmt: skip
    resembles = suspected_duplicate(invoice, _others(conn, invoice))
    similar = resembles.invoice_id if resembles else None
    payment.authorize(batch, invoice, parent, trigger, similar, actor)


_COMMITTED = """
SELECT cost_center_id, sum(round(quantity * unit_price, 4)) FROM match_order_lines
WHERE po_id = %s GROUP BY cost_center_id
"""


def _actualize(
    batch: Batch, invoice: Invoice, parent: Mapping[str, Any], per_center: Mapping[str, Decimal]
) -> None:
    """BudgetActualized per cost center; the overrun over the PO's commitment committed first."""
    conn, po_id, iid = batch.conn, invoice.po_id, invoice.invoice_id
    (period,) = conn.execute(
        "SELECT budget_period FROM match_orders WHERE po_id = %s", (po_id,)
    ).fetchone() or ("",)
    committed = {c: Decimal(a) for c, a in conn.execute(_COMMITTED, (po_id,))}
    done = {
        c: Decimal(a)
        for c, a in conn.execute(
            "SELECT cost_center_id, actualized FROM match_actuals WHERE po_id = %s", (po_id,)
        )
    }
    for center, amount in per_center.items():
        money = {"currency": invoice.currency}
        extra = overrun(committed.get(center, ZERO), done.get(center, ZERO), amount)
        common = {"cost_center_id": center, "period": period, "reference_id": po_id,
                  "reference_type": "PURCHASE_ORDER"}  # fmt: skip
        if extra > 0:
            batch.emitted.append({
                "envelope": emitted_envelope(parent, "BudgetCommitted", f"{iid}/{center}"),
                **common, "amount": {**money, "amount": extra},
            })  # fmt: skip
        batch.emitted.append({
            "envelope": emitted_envelope(parent, "BudgetActualized", f"{iid}/{center}"),
            **common, "amount": {**money, "amount": amount},
        })  # fmt: skip
        conn.execute(
            "INSERT INTO match_actuals (po_id, cost_center_id, actualized) VALUES (%s, %s, %s)"
            " ON CONFLICT (po_id, cost_center_id) DO UPDATE"
            " SET actualized = match_actuals.actualized + EXCLUDED.actualized",
            (po_id, center, amount),
        )


def _resolved(batch: Batch, r: Record) -> None:
    """An exception accepted (matched as invoiced, then paid) or rejected (never paid)."""
    iid, env, action = str(r["invoice_id"]), r["envelope"], str(r["action"])
    invoice, status, parent, _entity = _load(batch.conn, iid)
    reasons = batch.conn.execute(
        "SELECT reasons FROM invoices WHERE invoice_id = %s", (iid,)
    ).fetchone()
    problem = payment.resolution_refused(iid, status, action, reasons[0] if reasons else [])
    if problem:
        raise BusinessRuleError(problem)
    batch.conn.execute(
        "UPDATE invoices SET resolved_by = %s, resolution = %s, resolution_reason = %s,"
        " status = CASE WHEN %s = 'REJECT' THEN 'REJECTED' ELSE status END, updated_at = now()"
        " WHERE invoice_id = %s",
        (r["resolved_by"], action, r["reason"], action, iid),
    )
    who = str(r["resolved_by"])
    batch.note(env, iid, action.lower() + "ed", str(r["reason"]), actor=who)
    if action == "ACCEPT":
        order = load_order(batch.conn, invoice.po_id)
        if order is None:
            raise BusinessRuleError(f"invoice {iid}: PO {invoice.po_id} is not known")
        verdict = Verdict("MATCHED", tolerance_applied=True, actuals=actuals(invoice, order))
        settle(batch, invoice, parent, verdict, env, who)
