"""`supplybus exceptions list|resolve`, `supplybus payments release|dispatch`,
`supplybus show invoice`: the accounts-payable side of the three-way match.

Resolutions and releases are events written to the outbox (InvoiceExceptionResolved,
PaymentHoldReleased; the relay publishes them, the ``invoice-match`` processor applies them),
checked first against the stored state: see consumers/finance/payment.py.
"""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from supplybus.adapters.outbound import FolderTarget
from supplybus.adapters.postgres import connect
from supplybus.config import Settings
from supplybus.consumers.finance import invoice_queries, payment
from supplybus.consumers.finance.payment_dispatch import PaymentDispatcher
from supplybus.errors import ConfigError
from supplybus.events.catalog import EventCatalog
from supplybus.events.envelope import utcnow
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx
from supplybus.ops.cli.show import show


@cli.group("exceptions")
def exceptions() -> None:
    """The invoice exception queue: invoices that failed the three-way match (EXCEPTION) or
    wait for their PO or receipts (WAITING, matched by themselves when those arrive).

    Resolve an exception with `supplybus exceptions resolve INVOICE --as WHO --action
    accept|reject --reason ...`.
    """


@exceptions.command("list")
@click.option(
    "--reason",
    type=click.Choice(invoice_queries.CODES, case_sensitive=False),
    help="Only invoices with this reason code.",
)
@click.option(
    "--status",
    type=click.Choice(invoice_queries.QUEUE, case_sensitive=False),
    help="Only EXCEPTION (needs a person) or WAITING (for its PO or receipts).",
)
@json_option
@pass_ctx
def list_cmd(ctx: Context, reason: str | None, status: str | None, as_json: bool) -> None:
    """Invoices in the queue, oldest first, with their reason codes and messages."""
    with connect(ctx.running(kafka=False)) as conn:
        rows = invoice_queries.exception_queue(
            conn, reason.upper() if reason else None, status.upper() if status else None
        )
    if as_json:
        emit_json(rows)
        return
    if not rows:
        out.print("the exception queue is empty" + (f" for {reason.upper()}" if reason else ""))
        return
    table = Table("invoice", "number", "supplier", "PO", "status", "total", "reasons")
    for r in rows:
        why = "\n".join(
            f"{x['code']}"
            + (f" (line {x['po_line_number']})" if x["po_line_number"] is not None else "")
            + f": {x['message']}"
            for x in r["reasons"]
        )
        table.add_row(
            r["invoice_id"], r["invoice_number"], r["supplier_id"], r["po_id"], r["status"],
            f"{r['total']} {r['currency']}", why,
        )  # fmt: skip
    out.print(table)


@exceptions.command("resolve")
@click.argument("invoice_id")
@click.option("--as", "who", required=True, help="Who resolves it (kept in the audit trail).")
@click.option(
    "--action",
    type=click.Choice(["accept", "reject"], case_sensitive=False),
    required=True,
    help="accept: match it as invoiced (budget actualized, payment authorized unless held); "
    "reject: it is never paid.",
)
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@pass_ctx
def resolve_cmd(ctx: Context, invoice_id: str, who: str, action: str, reason: str) -> None:
    """Resolve INVOICE_ID in the exception queue (an InvoiceExceptionResolved through the
    outbox, applied by invoice-match). Refused with the reason (exit 2) when it cannot apply:
    not in the queue, accept of an invoice still waiting, or of one with nothing on its PO to
    match (NO_PO, CURRENCY)."""
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        record = payment.resolution(conn, invoice_id, who, action, reason, utcnow())
        payment.queue(conn, catalog, [record])
        conn.commit()
    out.print(
        f"invoice {invoice_id} {record['action'].lower()}ed by {who} (event "
        f"{record['envelope']['event_id']}, queued in the outbox for the relay)"
    )


@cli.group("payments")
def payments() -> None:
    """Payments of matched invoices: release a hold, write the payment-run files
    (docs/outbound-payments.md)."""


@payments.command("release")
@click.argument("invoice_id")
@click.option("--as", "who", required=True, help="Who releases it (kept in the audit trail).")
@click.option("--reason", help="Why (kept in the audit trail).")
@pass_ctx
def release_cmd(ctx: Context, invoice_id: str, who: str, reason: str | None) -> None:
    """Release the held payment of INVOICE_ID (supplier on hold, disputed receipt, duplicate
    suspicion): a PaymentHoldReleased through the outbox; invoice-match then authorizes it,
    once. Refused (exit 2) when the invoice has no payment on hold."""
    settings = ctx.running(kafka=False)
    catalog = EventCatalog.from_settings(settings)
    with connect(settings) as conn:
        record = payment.release_request(conn, invoice_id, who, reason, utcnow())
        payment.queue(conn, catalog, [record])
        conn.commit()
    out.print(
        f"payment of invoice {invoice_id} released by {who} (event "
        f"{record['envelope']['event_id']}, queued in the outbox for the relay)"
    )


def payments_folder(settings: Settings, folder: Path | None) -> FolderTarget:
    """--folder (must exist: a missing one is a target that is down), else
    <SUPPLYBUS_HOME>/outbound/payments, created if missing."""
    if folder is None:
        folder = settings.home / "outbound" / "payments"
        folder.mkdir(parents=True, exist_ok=True)
    return FolderTarget(folder)


@payments.command("dispatch")
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    help="The payment-run folder (default <SUPPLYBUS_HOME>/outbound/payments).",
)
@pass_ctx
def dispatch_cmd(ctx: Context, folder: Path | None) -> None:
    """One pass: write each authorized payment's file `PAY-<invoice>.json` (atomic; an
    existing file with other bytes is never overwritten: the payment is retried later).
    Exit 1 when a file could not be written."""
    settings = ctx.running(kafka=False)
    dispatcher = PaymentDispatcher(settings, payments_folder(settings, folder), on_line=click.echo)
    with connect(settings, autocommit=True) as conn:
        written = dispatcher.dispatch_pass(conn)
    click.echo(f"{written} payment file(s) written, {dispatcher.stats.retried} retried", err=True)
    if dispatcher.stats.retried:
        raise SystemExit(1)


@show.command("invoice")
@click.argument("invoice_id")
@json_option
@pass_ctx
def show_invoice(ctx: Context, invoice_id: str, as_json: bool) -> None:
    """An invoice: match status and reasons, lines, resolution, payment (holds, file) and its
    audit history."""
    with connect(ctx.running(kafka=False)) as conn:
        doc = invoice_queries.invoice(conn, invoice_id)
    if doc is None:
        raise ConfigError(f"invoice {invoice_id!r} is not known")
    if as_json:
        emit_json(doc)
        return
    out.print(
        f"invoice {doc['invoice_id']} ({doc['invoice_number']})  [bold]{doc['status']}[/bold]  "
        f"{doc['total']} {doc['currency']}  supplier {doc['supplier_id']}  PO "
        f"{doc['po_number'] or doc['po_id']}  dated {doc['invoice_date']}"
    )
    for r in doc["reasons"]:
        out.print(f"[red]{r['code']}[/red]: {r['message']}")
    if doc["resolution"]:
        out.print(
            f"resolved: {doc['resolution']} by {doc['resolved_by']}: {doc['resolution_reason']}"
        )
    lines = Table("line", "PO line", "item", "quantity", "unit price")
    for ln in doc["lines"]:
        lines.add_row(
            str(ln["line_number"]), str(ln["po_line_number"]), ln["item_id"],
            f"{ln['quantity']} {ln['uom']}", f"{ln['unit_price']} {ln['currency']}",
        )  # fmt: skip
    out.print(lines)
    pay = doc["payment"]
    if pay:
        holds = f" holds: {', '.join(pay['holds'])}" if pay["holds"] else ""
        out.print(f"payment {pay['payment_id']} {pay['status']}{holds}")
        if pay["file"]:
            f = pay["file"]
            out.print(f"payment-run file {f['name']}: {f['status']} {f['written_to'] or ''}")
    table = Table("at", "actor", "action", "why")
    for h in doc["history"]:
        table.add_row(h["at"][:19], h["actor"], h["action"], h["reason"])
    out.print(table)
