"""Payment authorization of matched invoices: holds, release, the payment-run document.

A matched invoice gets exactly one ``invoice_payments`` row (primary key: the invoice), so
PaymentAuthorized is emitted at most once per invoice whatever is replayed: its id is
deterministic in the invoice's InvoiceReceived, and the row is inserted with ``ON CONFLICT DO
NOTHING`` / moved from HELD with a conditional update. Holds (``holds``):

- SUPPLIER_ON_HOLD: the supplier master says BLOCKED or INACTIVE (or does not know it);
- DISPUTED_RECEIPT: a ReceivingDiscrepancy DAMAGED or WRONG_ITEM on the PO;
- DUPLICATE_SUSPECTED: another invoice of the supplier for the PO with the same date, total
  and currency under another number (``matching.suspected_duplicate``).

A held payment is authorized by ``supplybus payments release INVOICE --as WHO``: a
PaymentHoldReleased through the outbox, applied by invoice-match. Each authorization queues
its payment-run file (``payment_deliveries``; written by the payment dispatcher, layout
docs/outbound-payments.md).

The ``resolution``/``release_request`` functions are the CLI side (like
consumers/approvals/commands.py): checked against the stored state first, so a user gets the
refusal at once; the processor applies the same rules (``resolution_refused``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol

import psycopg

from supplybus.consumers.finance.matching import Invoice
from supplybus.errors import BusinessRuleError, ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import caused_by, deterministic_id, new_envelope
from supplybus.producers import outbox

NAME = "invoice-match"
SOURCE = "supplybus.finance.cli"
LAYOUT = "supplybus.payment.v1"
HOLDS = ("SUPPLIER_ON_HOLD", "DISPUTED_RECEIPT", "DUPLICATE_SUSPECTED")
DISPUTED = frozenset({"DAMAGED", "WRONG_ITEM"})
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,190}")
Record = dict[str, Any]


class Sink(Protocol):
    """Where the processor collects what a batch emits and audits."""

    conn: psycopg.Connection
    emitted: list[Mapping[str, Any]]

    def note(self, env: Mapping[str, Any], invoice_id: str, action: str, reason: str,
             actor: str = ..., **detail: str) -> None: ...  # fmt: skip


def holds(supplier_status: str | None, discrepancies: Iterable[str], suspected: bool) -> list[str]:
    """The holds on a matched invoice's payment, in ``HOLDS`` order."""
    found = []
    if supplier_status not in ("ACTIVE",):
        found.append("SUPPLIER_ON_HOLD")
    if DISPUTED & set(discrepancies):
        found.append("DISPUTED_RECEIPT")
    if suspected:
        found.append("DUPLICATE_SUSPECTED")
    return found


def resolution_refused(
    invoice_id: str, status: str, action: str, reasons: Sequence[Mapping[str, Any]]
) -> str | None:
    """Why a resolution cannot apply (None: it can). Accept: an invoice in EXCEPTION whose
    lines all bill PO lines in the PO's currency; reject: any invoice in the queue."""
    if action not in ("ACCEPT", "REJECT"):
        return f"action {action!r}: expected ACCEPT or REJECT"
    if status not in ("EXCEPTION", "WAITING"):
        return f"invoice {invoice_id} is {status.lower()}, not in the exception queue"
    if action == "REJECT":
        return None
    if status != "EXCEPTION":
        return (
            f"invoice {invoice_id} waits for its PO or receipts (it is matched when they "
            "arrive); only reject applies"
        )
    blocking = sorted({str(r["code"]) for r in reasons} & {"CURRENCY", "NO_PO"})
    if blocking:
        return (
            f"invoice {invoice_id} cannot be accepted ({', '.join(blocking)}: nothing on the PO "
            "to match it to in its currency); reject it and ask the supplier for a new one"
        )
    return None


def emitted_envelope(
    parent: Mapping[str, Any], kind: str, discriminator: str, actor: str | None = None
) -> Record:
    """The envelope of an event invoice-match emits for an invoice: caused by the invoice's
    InvoiceReceived (``parent``), its id deterministic in the invoice (``discriminator``
    starts with the invoice id), not in that event's id: a copy of the invoice re-sent under
    another event id and applied first still gives the ids of in-order delivery."""
    envelope = caused_by(parent, kind, emitter=NAME, discriminator=discriminator, actor=actor)
    envelope["event_id"] = deterministic_id(NAME, kind, "invoice", discriminator)
    return envelope


def payment_id(invoice_id: str) -> str:
    return deterministic_id("payment", invoice_id)


def file_name(invoice_id: str) -> str:
    """``PAY-<invoice id>`` when that is a safe file name, else ``PAY-<payment id>``."""
    name = f"PAY-{invoice_id}"
    return name if _SAFE_NAME.fullmatch(name) else f"PAY-{payment_id(invoice_id)}"


def authorize(
    sink: Sink,
    invoice: Invoice,
    parent: Mapping[str, Any],
    trigger: Mapping[str, Any],
    suspected_of: str | None,
    who: str = NAME,
) -> None:
    """The payment of a matched invoice: authorized now (by ``who``: the matcher, or the
    person who accepted the exception), or held with its holds."""
    conn, iid = sink.conn, invoice.invoice_id
    supplier = conn.execute(
        "SELECT status FROM suppliers WHERE supplier_id = %s", (invoice.supplier_id,)
    ).fetchone()
    kinds = [
        k for (k,) in conn.execute(
            "SELECT DISTINCT kind FROM match_discrepancies WHERE po_id = %s", (invoice.po_id,)
        )
    ]  # fmt: skip
    found = holds(supplier[0] if supplier else None, kinds, suspected_of is not None)
    inserted = conn.execute(
        "INSERT INTO invoice_payments (invoice_id, payment_id, status, holds, amount, currency)"
        " VALUES (%s, %s, 'HELD', %s, %s, %s) ON CONFLICT DO NOTHING RETURNING invoice_id",
        (iid, payment_id(iid), found, invoice.lines_total, invoice.currency),
    ).fetchone()
    if inserted is None:
        return  # one payment per invoice
    if found:
        detail = {"holds": ",".join(found)}
        if suspected_of:
            detail["resembles"] = suspected_of
        sink.note(trigger, iid, "payment held", ", ".join(found), **detail)
        return
    _authorized(sink, iid, parent, trigger, who, [])


def release(sink: Sink, r: Record) -> None:
    """PaymentHoldReleased: a held payment authorized (nothing when authorized already)."""
    iid, env = str(r["invoice_id"]), r["envelope"]
    row = sink.conn.execute(
        "SELECT p.status, p.holds, i.envelope FROM invoice_payments p JOIN invoices i"
        " USING (invoice_id) WHERE invoice_id = %s FOR UPDATE OF p",
        (iid,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"invoice {iid} has no payment to release (not matched)")
    status, held, parent = row
    if status == "AUTHORIZED":
        return
    who = str(r["released_by"])
    sink.note(env, iid, "payment released", str(r.get("reason") or ""), actor=who,
              holds=",".join(held))  # fmt: skip
    _authorized(sink, iid, parent, env, who, list(held))


def _authorized(
    sink: Sink,
    iid: str,
    parent: Mapping[str, Any],
    trigger: Mapping[str, Any],
    who: str,
    released: list[str],
) -> None:
    conn = sink.conn
    row = conn.execute(
        "SELECT i.invoice_number, i.supplier_id, i.po_id, i.invoice_date, i.lines, i.entity_id,"
        " p.amount, p.currency, p.payment_id, o.po_number FROM invoices i"
        " JOIN invoice_payments p USING (invoice_id)"
        " LEFT JOIN match_orders o ON o.po_id = i.po_id WHERE invoice_id = %s",
        (iid,),
    ).fetchone()
    if row is None:  # pragma: no cover - the caller holds the row
        raise BusinessRuleError(f"invoice {iid} has no payment")
    number, supplier, po_id, date, lines, entity, amount, currency, pid, po_number = row
    envelope = emitted_envelope(parent, "PaymentAuthorized", iid, who)
    sink.emitted.append({
        "envelope": envelope,
        "payment_id": pid,
        "invoice_id": iid,
        "invoice_number": number,
        "po_id": po_id,
        "supplier_id": supplier,
        "amount": {"amount": Decimal(amount), "currency": currency},
        "invoice_date": date,
        "authorized_by": who,
        "released_holds": released,
    })  # fmt: skip
    at = envelope["occurred_at"]
    conn.execute(
        "UPDATE invoice_payments SET status = 'AUTHORIZED', authorized_by = %s,"
        " authorized_at = %s, event_id = %s, updated_at = now() WHERE invoice_id = %s",
        (who, at, envelope["event_id"], iid),
    )
    doc = {
        "layout": LAYOUT, "payment_id": pid, "invoice_id": iid, "invoice_number": number,
        "supplier_id": supplier, "po_id": po_id, "po_number": po_number, "entity_id": entity,
        "amount": str(Decimal(amount)), "currency": currency, "invoice_date": date.isoformat(),
        "authorized_by": who, "authorized_at": at.astimezone(dt.UTC).isoformat(),
        "released_holds": released, "correlation_id": str(parent["correlation_id"]),
        "event_id": envelope["event_id"], "lines": lines,
    }  # fmt: skip
    conn.execute(
        "INSERT INTO payment_deliveries (payment_id, invoice_id, file_name, document)"
        " VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
        (pid, iid, file_name(iid), json.dumps(doc)),
    )
    sink.note(trigger, iid, "payment authorized", f"{Decimal(amount)} {currency} by {who}",
              actor=who, payment_id=pid)  # fmt: skip


# --- the CLI side --------------------------------------------------------------------------


def _invoice_row(conn: psycopg.Connection, invoice_id: str) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT i.status, i.reasons, i.po_id, i.envelope, i.entity_id, p.status"
        " FROM invoices i LEFT JOIN invoice_payments p USING (invoice_id)"
        " WHERE invoice_id = %s",
        (invoice_id,),
    ).fetchone()
    if row is None:
        raise BusinessRuleError(f"invoice {invoice_id} is not known")
    return tuple(row)


def resolution(
    conn: psycopg.Connection, invoice_id: str, who: str, action: str, reason: str,
    now: dt.datetime,
) -> Record:  # fmt: skip
    """The InvoiceExceptionResolved of ``who``; BusinessRuleError when it would be refused."""
    if not reason.strip():
        raise ConfigError("--reason: a resolution needs a reason")
    action = action.upper()
    status, reasons, po_id, parent, entity, _paid = _invoice_row(conn, invoice_id)
    problem = resolution_refused(invoice_id, status, action, reasons)
    if problem:
        raise BusinessRuleError(problem)
    return {
        "envelope": _envelope("InvoiceExceptionResolved", parent, entity, who, now,
                              f"{invoice_id}/resolved"),
        "invoice_id": invoice_id, "po_id": po_id, "action": action, "resolved_by": who,
        "reason": reason,
    }  # fmt: skip


def release_request(
    conn: psycopg.Connection, invoice_id: str, who: str, reason: str | None, now: dt.datetime
) -> Record:
    """The PaymentHoldReleased of ``who``; BusinessRuleError unless the payment is held."""
    status, _reasons, po_id, parent, entity, paid = _invoice_row(conn, invoice_id)
    if paid != "HELD":
        state = "authorized already" if paid == "AUTHORIZED" else f"{status.lower()}, not matched"
        raise BusinessRuleError(f"invoice {invoice_id} has no payment on hold ({state})")
    return {
        "envelope": _envelope("PaymentHoldReleased", parent, entity, who, now,
                              f"{invoice_id}/released"),
        "invoice_id": invoice_id, "po_id": po_id, "released_by": who, "reason": reason,
    }  # fmt: skip


def queue(conn: psycopg.Connection, catalog: EventCatalog, records: Sequence[Record]) -> None:
    """Validate and write ``records`` to the outbox (the caller commits; the relay publishes)."""
    outbox.append(conn, SOURCE, [catalog.prepare(r) for r in records])


def _envelope(
    kind: str, parent: Mapping[str, Any], entity: str, who: str, now: dt.datetime, part: str
) -> Record:
    """A decision's envelope: one id per invoice and decision, so a repeat is applied once."""
    return new_envelope(
        kind, source_system=SOURCE, entity_id=entity, facility_id=parent.get("facility_id"),
        actor=who, correlation_id=str(parent["correlation_id"]),
        causation_id=str(parent["event_id"]), priority=str(parent.get("priority") or "ROUTINE"),
        occurred_at=now, event_id=deterministic_id(kind, part),
    )  # fmt: skip
