"""`supplybus show requisition|po ID`: one business document, its state and its history."""

from __future__ import annotations

from typing import Any

import click
from rich.table import Table

from supplybus.adapters.postgres import connect
from supplybus.consumers.procurement import queries
from supplybus.errors import ConfigError
from supplybus.ops.cli.root import Context, cli, emit_json, json_option, out, pass_ctx


@cli.group("show")
def show() -> None:
    """One requisition or purchase order: status, lines, approvals, history."""


@show.command("requisition")
@click.argument("requisition_id")
@json_option
@pass_ctx
def show_requisition(ctx: Context, requisition_id: str, as_json: bool) -> None:
    """A requisition: status, lines as placed (supplier, price), approval steps with who
    decided (and for whom), its purchase orders, and its audit history."""
    with connect(ctx.running(kafka=False)) as conn:
        doc = queries.requisition(conn, requisition_id)
    if doc is None:
        raise ConfigError(f"requisition {requisition_id!r} is not known")
    if as_json:
        emit_json(doc)
        return
    out.print(
        f"requisition {doc['requisition_id']}  [bold]{doc['status']}[/bold]  "
        f"{doc['total']} {doc['currency']}  {doc['urgency']}  {doc['entity_id']}/"
        f"{doc['facility_id']}  cost center {doc['cost_center_id']}  by {doc['requester_id']}"
    )
    if doc["flags"]:
        out.print(f"flags: {', '.join(doc['flags'])}")
    for reason in doc["reasons"] or ():
        out.print(f"[red]rejected[/red] {reason['code']}: {reason['message']}")
    lines = Table("line", "item", "supplier", "quantity", "unit price", "contract")
    for ln in doc["lines"]:
        lines.add_row(
            str(ln["line_number"]), ln["item_id"], str(ln["supplier_id"]),
            f"{ln['quantity']} {ln['uom']}", f"{ln['unit_price']} {ln['currency']}",
            "yes" if ln.get("on_contract") else "no",
        )  # fmt: skip
    out.print(lines)
    if doc["steps"]:
        steps = Table("step", "role", "status", "due", "decided by", "comment")
        for s in doc["steps"]:
            who = s["decided_by"] or ""
            if s["on_behalf_of"]:
                who += f" for {s['on_behalf_of']}"
            steps.add_row(
                str(s["step"]), "/".join(s["roles"]), s["status"], s["due_at"] or "", who,
                s["comment"] or "",
            )  # fmt: skip
        out.print(steps)
    for po in doc["purchase_orders"]:
        out.print(f"PO {po['po_number']} {po['supplier_id']} {po['total']} {po['currency']} "
                  f"{po['status']}")  # fmt: skip
    _history(doc["history"])


@show.command("po")
@click.argument("po")
@json_option
@pass_ctx
def show_po(ctx: Context, po: str, as_json: bool) -> None:
    """A purchase order by number (PO-EAST-000001) or id: lines, delivery to the outbound
    target (attempts, errors, alert), and its audit history."""
    with connect(ctx.running(kafka=False)) as conn:
        doc = queries.purchase_order(conn, po)
    if doc is None:
        raise ConfigError(f"purchase order {po!r} is not known")
    if as_json:
        emit_json(doc)
        return
    out.print(
        f"PO {doc['po_number']}  [bold]{doc['status']}[/bold]  {doc['supplier_id']}  "
        f"{doc['total']} {doc['currency']}  ship to {doc['ship_to_location_id']}  "
        f"requisition {doc['requisition_id']}"
    )
    lines = Table("line", "item", "quantity", "unit price", "amount", "cost center")
    for ln in doc["lines"]:
        lines.add_row(
            str(ln["line_number"]), ln["item_id"], f"{ln['quantity']} {ln['uom']}",
            ln["unit_price"], ln["amount"], ln["cost_center_id"],
        )  # fmt: skip
    out.print(lines)
    d = doc["delivery"]
    if d:
        where = f" to {d['delivered_to']}" if d["delivered_to"] else ""
        error = f"; last error: {d['last_error']}" if d["status"] != "DELIVERED" and d[
            "last_error"] else ""  # fmt: skip
        out.print(f"delivery: {d['status']}{where} after {d['attempts']} attempt(s){error}")
    _history(doc["history"])


def _history(entries: list[dict[str, Any]]) -> None:
    table = Table("at", "actor", "action", "why")
    for h in entries:
        table.add_row(h["at"][:19], h["actor"], h["action"], h["reason"])
    out.print(table)
