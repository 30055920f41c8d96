"""`supplybus show receipt ID`: a goods receipt, its lines and what they did."""

from __future__ import annotations

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.inventory.receipt_queries import receipt
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, emit_json, json_option, out, pass_ctx
from supplybus.ops.cli.show import show


@show.command("receipt")
@click.argument("receipt_id")
@json_option
@pass_ctx
def show_receipt(ctx: Context, receipt_id: str, as_json: bool) -> None:
    """A goods receipt: its PO, each line as received and converted to the PO line's unit
    (received, rejected, accepted, discrepancies), the PO lines' totals over all receipts,
    and its audit history. A receipt waiting for its purchase order shows as WAITING."""
    with connect(ctx.running(kafka=False)) as conn:
        doc = receipt(conn, receipt_id)
    if doc is None:
        raise ConfigError(f"receipt {receipt_id!r} is not known")
    if as_json:
        emit_json(doc)
        return
    if doc["status"] == "WAITING":
        out.print(
            f"receipt {doc['receipt_id']}  [bold]WAITING[/bold] for purchase order "
            f"{doc['po_id']} since {doc['waiting_since'][:19]}; {len(doc['lines'])} line(s)"
        )
    else:
        out.print(
            f"receipt {doc['receipt_id']}  [bold]APPLIED[/bold]  PO {doc['po_number']}  "
            f"into {doc['location_id']}  received {doc['received_at'][:19]}  "
            f"{doc['discrepancies']} discrepanc{'y' if doc['discrepancies'] == 1 else 'ies'}"
        )
        lines = Table("line", "PO line", "item", "as received", "received", "rejected",
                      "accepted", "lot", "expiry", "discrepancies")  # fmt: skip
        for ln in doc["lines"]:
            lines.add_row(
                str(ln["line_index"]), str(ln["po_line_number"]), ln["item_id"],
                f"{ln['received_as']} {ln['received_as_uom']}",
                f"{ln['received'] or '-'} {ln['uom']}", ln["rejected"] or "-", ln["accepted"],
                ln["lot_number"] or "", ln["expiry_date"] or "", ", ".join(ln["discrepancies"]),
            )  # fmt: skip
        out.print(lines)
        totals = Table("PO line", "item", "ordered", "received", "rejected", "accepted")
        for p in doc["po_lines"]:
            totals.add_row(
                str(p["line_number"]), p["item_id"], f"{p['ordered']} {p['uom']}",
                p["received"], p["rejected"], p["accepted"],
            )  # fmt: skip
        out.print(totals)
    table = Table("at", "actor", "action", "why")
    for h in doc["history"]:
        table.add_row(h["at"][:19], h["actor"], h["action"], h["reason"])
    out.print(table)
